"""The `stream` kind: a worker the service supervises, not a run the engine launches per partition.

    supervisors = start_streams(spec, settings, store)    # Service.run does this once
    ...
    for s in supervisors: s.stop()                        # on shutdown

A stream job has no inputs and is never "ready": its worker (coordinator/streamjob.py, in its
own interpreter) runs for as long as the service does and announces each closed hourly window
as a completion event of the job's output, which the engine records like any producer's.

`StreamSupervisor`, one per stream job and a thread of its own:
- **one live worker per job across coordinator instances**: it holds the lease `stream:<job>`
  (coordinator/lease.py, the instances' lease table) while its worker runs; an instance that
  cannot take it waits as a standby and takes over once the holder's lease ends or expires;
  a lease lost while running (this process paused past its TTL) stops the worker at once;
- **restarted with backoff** when the worker dies: `restart_backoff_s`, doubling up to
  `restart_backoff_max_s`, back to the first wait after a worker that ran a minute;
- **stopped on shutdown**: SIGTERM (faust leaves its group and flushes), SIGKILL after 15 s;
- **its folder** `<home>/streams/<job>/`: `log` (every start appended), `config.json`, the
  worker's `state/` (coordinator/streamstate.py: per source partition, window contents, offsets
  applied, event times; the watermark, the windows announced) and a heartbeat per worker,
  `heartbeat-<worker token>.json`, which `health()` reads as the job's whole (coordinator/
  streambeats.py: workers up, partitions each holds, lag summed, watermark, windows, counts).

`StreamLauncher` refuses a per-partition run of such a job (an operator's rerun or backfill)
with a reason, instead of starting a second worker.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.errors import LaunchError, SettingsError
from coordinator.kinds.stream import REPO_ROOT, StreamSettings
from coordinator.launchers.base import Handle, Launcher, RunContext, RunResult
from coordinator.streambeats import OUTCOMES, STALE_BEAT_S, stream_health
from coordinator.streambroker import SECURITY_ENV, security_options

if TYPE_CHECKING:
    from coordinator.settings import Settings
    from coordinator.spec.models import PipelineSpec
    from coordinator.store.store import StateStore

log = logging.getLogger("coordinator.stream")
STOP_GRACE_S = 15.0
STABLE_RUN_S = 60.0  # a worker that ran this long resets the restart backoff


def stream_dir(home: str | Path, job: str) -> Path:
    """The run folder of a stream job's worker."""
    return Path(home) / "streams" / job


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the worker's web server (faust binds one even unasked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_line(path: Path, size: int = 4096) -> str:
    """The last non-empty line of the worker's log (what it said as it died), or ''."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


class StreamLauncher(Launcher):
    kind = "stream"
    settings_model = StreamSettings

    def start(self, ctx: RunContext) -> Handle:
        raise LaunchError(
            f"{ctx.job} is a stream job: its worker is supervised by the service and announces "
            "each window itself; a partition of it is not run on demand"
        )

    def wait(self, handle: Handle, ctx: RunContext) -> RunResult:  # pragma: no cover - never started
        raise LaunchError("a stream job has no runs to wait for")

    def cancel(self, handle: Handle) -> None:
        return None


class StreamSupervisor:
    """Keeps one worker of one stream job alive while this service runs (module docstring)."""

    def __init__(
        self, job: str, output: str, cfg: StreamSettings, settings: Settings, store: StateStore
    ) -> None:
        self.job, self.output, self.cfg, self.settings, self.store = job, output, cfg, settings, store
        self.folder = stream_dir(settings.home, job).resolve()
        self.starts = 0  # how many times a worker was started (tests, health)
        self.started_at: list[float] = []  # when each start was (monotonic), to see the backoff
        self.process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> StreamSupervisor:
        problem = self.cfg.interpreter_problem()
        if problem is not None:
            raise SettingsError(f"stream job {self.job!r}: {problem}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._supervise, name=f"coord-stream-{self.job}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_GRACE_S + 5)
            self._thread = None

    def health(self) -> dict[str, Any]:
        """The job's health from its workers' heartbeats (empty before the first; with every
        worker sharing this folder, this instance's and any other's), whether this instance's
        worker runs (`alive`) and how many times it was started."""
        alive = self.process is not None and self.process.poll() is None
        return {**stream_health(self.folder), "alive": alive, "starts": self.starts}

    # ------------------------------------------------------------------ the thread
    def _supervise(self) -> None:
        from coordinator.lease import LeaseConflict, LeaseKeeper

        backoff = self.cfg.restart_backoff_s
        while not self._stop.is_set():
            keeper = LeaseKeeper(self.store, self.settings, name=f"stream:{self.job}")
            try:
                keeper.acquire()
            except LeaseConflict as exc:
                log.info("stream %s: standby (%s)", self.job, exc)
                self._stop.wait(self.settings.lease_renew_s)
                continue
            except Exception:
                log.exception("stream %s: the lease could not be taken; retrying", self.job)
                self._stop.wait(backoff)
                continue
            keeper.start()
            try:
                backoff = self._run_workers(keeper, backoff)
            finally:
                keeper.release()

    def _run_workers(self, keeper: Any, backoff: float) -> float:
        """Start, watch and restart the worker while the lease holds and no stop is asked."""
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.process = self._spawn()
            except OSError as exc:
                log.error("stream %s: the worker could not start: %s", self.job, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg.restart_backoff_max_s)
                continue
            while self.process.poll() is None:
                if self._stop.wait(0.2) or not keeper.fresh():
                    self._end(self.process)
                    if not self._stop.is_set():
                        log.error("stream %s: the lease went stale; worker stopped", self.job)
                    return backoff
            code = self.process.returncode
            if time.monotonic() - began >= STABLE_RUN_S:
                backoff = self.cfg.restart_backoff_s
            log.warning(
                "stream %s: the worker exited (%s): %s; restarting in %g s (log %s)",
                self.job,
                code,
                last_line(self.folder / "log"),
                backoff,
                self.folder / "log",
            )
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.cfg.restart_backoff_max_s)
        return backoff

    def _config(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "run_dir": str(self.folder),
            "state_dir": str(self.folder / "state"),
            "job": self.job,
            "dataset": self.output,
            "output": cfg.window_template(self.output, self.job, self.folder),
            "topic": cfg.topic,
            "events_topic": self.settings.topic_events,
            "bootstrap": self.settings.kafka_bootstrap_servers,
            "group": cfg.group or f"coord-stream-{self.job}",
            "time_field": cfg.time_field,
            "key_field": cfg.key_field,
            "lateness_s": cfg.lateness_s,
            "heartbeat_s": cfg.heartbeat_s,
            "commit_interval_s": cfg.commit_interval_s,
            "late_data": cfg.late_data,
            "revise_within_s": cfg.revise_within_s,
            "topics_dir": str(REPO_ROOT / "topics"),
            "web_port": free_port(),
            "parent_pid": os.getpid(),
        }

    def _spawn(self) -> subprocess.Popen[bytes]:
        config = self.folder / "config.json"
        config.write_text(json.dumps(self._config(), indent=2))
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        if self.settings.kafka_security:  # in the environment, never in the config file
            env[SECURITY_ENV] = json.dumps(self.settings.kafka_security_config())
        with open(self.folder / "log", "ab") as out:
            out.write(f"--- start {self.starts + 1} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            out.flush()
            process = subprocess.Popen(
                [str(self.cfg.interpreter()), "-m", "coordinator.streamjob", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.folder,
                env=env,
                start_new_session=True,  # its own group: a Ctrl-C of the service reaches it through stop()
            )
        self.starts += 1
        self.started_at.append(time.monotonic())
        record = {"starts": self.starts, "pid": process.pid, "at": time.time()}
        (self.folder / "supervisor.json").write_text(json.dumps(record))  # for the UI (stream_status)
        log.info("stream %s: worker pid %d started (log %s)", self.job, process.pid, self.folder / "log")
        return process

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stream_status(home: str | Path, job: str, clock: Any = time.time) -> dict[str, Any]:
    """A stream job's health as its folder tells it, for the UI (which may run in a process of its
    own): from every worker's heartbeat (streambeats.job_health), the youngest beat's age, the
    workers up and the partitions each holds, the consumer lag summed over them, the job's
    watermark, windows open and announced, messages by outcome; and the supervisor's starts.
    `up` while some worker's heartbeat is fresh (within 10 s)."""
    folder = stream_dir(home, job)
    try:
        supervisor = json.loads((folder / "supervisor.json").read_text())
    except (OSError, ValueError):
        supervisor = {}
    now = clock()
    health = stream_health(folder, now)
    age = max(0.0, now - health["at"]) if "at" in health else None
    starts = supervisor.get("starts", 0) if isinstance(supervisor, dict) else 0
    return {
        "job": job,
        "up": age is not None and age < STALE_BEAT_S,
        "heartbeat_age_s": None if age is None else round(age, 1),
        "workers_up": health.get("workers_up", 0),
        "workers": health.get("workers", []),
        "partitions": health.get("partitions", []),
        "lag": health.get("lag"),
        "watermark": health.get("watermark"),
        "windows_open": health.get("windows_open"),
        "announced": health.get("announced"),
        "starts": starts,
        "restarts": max(0, starts - 1),
        **{outcome: health.get(outcome) for outcome in OUTCOMES},
    }


class StreamCollector:
    """The stream workers' health for /metrics, read from their heartbeats at each scrape:
    coord_stream_up (this instance's worker), _workers_up (every worker of the job with a fresh
    heartbeat), _partitions_held{worker}, _starts, _heartbeat_age_seconds (the youngest beat),
    _watermark_seconds (event time), _windows_open, _windows_announced, _lag_messages (summed over
    the workers up) and _messages{outcome=events|late|rejected|replayed}."""

    OUTCOMES = OUTCOMES

    def __init__(self, supervisors: list[StreamSupervisor], clock: Any = time.time) -> None:
        self.supervisors, self.clock = supervisors, clock

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gauges = {
            name: GaugeMetricFamily(f"coord_stream_{name}", doc, labels=["job"])
            for name, doc in (
                ("up", "1 while the stream job's worker runs here"),
                ("workers_up", "workers of the stream job with a fresh heartbeat, here or elsewhere"),
                ("starts", "workers started by this instance for the job"),
                ("heartbeat_age_seconds", "seconds since the worker's last heartbeat"),
                ("watermark_seconds", "the worker's watermark (event time, epoch seconds)"),
                ("windows_open", "hourly windows not closed yet"),
                ("windows_announced", "hourly windows closed and announced"),
                ("lag_messages", "messages behind the end of the partitions the workers up hold"),
            )
        }
        held = GaugeMetricFamily(
            "coord_stream_partitions_held", "source partitions a worker holds", labels=["job", "worker"]
        )
        messages = CounterMetricFamily(
            "coord_stream_messages", "messages by outcome", labels=["job", "outcome"]
        )
        for supervisor in self.supervisors:
            health, job = supervisor.health(), [supervisor.job]
            gauges["up"].add_metric(job, 1.0 if health["alive"] else 0.0)
            gauges["starts"].add_metric(job, health["starts"])
            gauges["workers_up"].add_metric(job, health.get("workers_up", 0))
            if "at" not in health:
                continue
            gauges["heartbeat_age_seconds"].add_metric(job, max(0.0, self.clock() - health["at"]))
            for worker in health["workers"]:
                held.add_metric(job + [str(worker["worker"])], len(worker["partitions"]))
            if health.get("watermark") is not None:
                gauges["watermark_seconds"].add_metric(job, health["watermark"])
            gauges["windows_open"].add_metric(job, health.get("windows_open", 0))
            gauges["windows_announced"].add_metric(job, health.get("announced", 0))
            if health.get("lag") is not None:
                gauges["lag_messages"].add_metric(job, health["lag"])
            for outcome in self.OUTCOMES:
                messages.add_metric(job + [outcome], health.get(outcome, 0))
        yield from gauges.values()
        yield held
        yield messages


def stream_jobs(spec: PipelineSpec) -> list[str]:
    return [name for name, job in spec.jobs.items() if job.kind == "stream"]


def supervisor_for(spec: PipelineSpec, job: str, settings: Settings, store: StateStore) -> StreamSupervisor:
    """A supervisor for one stream job; SettingsError unless it has exactly one hourly output."""
    job_spec = spec.jobs[job]
    if len(job_spec.outputs) != 1 or spec.partitioning(job_spec.outputs[0]) != "hourly":
        raise SettingsError(f"stream job {job!r} needs exactly one output dataset partitioned hourly")
    try:
        security_options(settings.kafka_security_config())
    except ValueError as exc:
        raise SettingsError(f"stream job {job!r}: COORD_KAFKA_SECURITY: {exc}") from None
    raw = job_spec.settings
    cfg = raw if isinstance(raw, StreamSettings) else StreamSettings.model_validate(dict(raw))
    return StreamSupervisor(job, job_spec.outputs[0], cfg, settings, store)


def start_streams(spec: PipelineSpec, settings: Settings, store: StateStore) -> list[StreamSupervisor]:
    """A started supervisor for every stream job of the spec (none: an empty list)."""
    started: list[StreamSupervisor] = []
    try:
        for job in stream_jobs(spec):
            started.append(supervisor_for(spec, job, settings, store).start())
    except BaseException:
        for supervisor in started:
            supervisor.stop()
        raise
    return started
