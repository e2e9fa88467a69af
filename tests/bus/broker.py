"""A private single-node Kafka (KRaft, combined mode) for tests that must stop and restart a broker.

The shared broker serves every test at once and must never be stopped, so a test that needs an
outage starts its own: the jars `scripts/services` resolved (.cache/kafka/libs), the same java
command line and log configuration, a temporary folder, ports picked free, and the process
stopped by its own PID only.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBS = ROOT / ".cache" / "kafka" / "libs"
LOG4J = ROOT / "scripts" / "kafka" / "log4j2.properties"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class PrivateBroker:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.controller_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, *args: str, heap: str = "-Xmx512m") -> list[str]:
        # scripts/services' command line, with a smaller heap and the quick-start JIT tier: a test
        # broker lives for seconds on a machine shared with the rest of the suite.
        return ["java", "-Xms128m", heap, "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J}",
                f"-Dkafka.logs.dir={self.workdir / 'logs'}",
                "-cp", f"{LIBS}/*", *args]

    def _configure(self) -> Path:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT", f"log.dirs={self.workdir / 'data'}",
            "num.partitions=3", "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=true", ""]))
        if not self._formatted:
            # "--cluster-id=ID": an id drawn with a leading "-" is otherwise read as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                                      "-c", str(props),
                                      heap="-Xmx256m"),
                           check=True, capture_output=True, timeout=120)
            self._formatted = True
        return props

    def start(self, timeout: float = 90.0) -> None:
        props = self._configure()
        with open(self.workdir / "logs" / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"private Kafka exited with {code}; see {self.workdir / 'logs'}")
            if port_open(self.port):
                try:
                    AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=5)
                    return
                except Exception:  # not ready yet: the driver raises KafkaException
                    pass
            time.sleep(0.3)
        raise TimeoutError(f"private Kafka not ready on {self.bootstrap} after {timeout} s")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown) to our own process; SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None
