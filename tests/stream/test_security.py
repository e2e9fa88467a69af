"""COORD_KAFKA_SECURITY reaches the stream worker: its librdkafka keys become faust's broker
credentials (and aiokafka's settings under them), they travel in the worker's environment and
never in its config file, a key the worker cannot take stops the service at start naming it, and
a PLAINTEXT setting runs a worker on the real broker as before. (No SASL broker here: what is
checked is what faust is given.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.errors import SettingsError
from coordinator.kinds.stream import REPO_ROOT
from coordinator.launchers.stream import supervisor_for
from coordinator.service import Service
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.streambroker import security_options
from tests.stream.streams import DAY, kafka_settings, serve_during, state, stream_spec, wait_for

SCRAM = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": "clicks",
    "sasl.password": "s3cret-pw",
    "ssl.endpoint.identification.algorithm": "none",
}
SPEC = """
datasets: {stream.clicks: {partitioning: hourly}}
jobs:
  clicks_hourly: {kind: stream, outputs: [stream.clicks], settings: {topic: web.clicks, python: %s}}
"""


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A self-signed certificate, the CA a TLS broker would present."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=clicks-ca",
            "-keyout",
            str(tmp_path / "ca.key"),
            "-out",
            str(tmp_path / "ca.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return tmp_path / "ca.pem"


def test_librdkafka_settings_become_the_workers_options_or_are_refused_naming_the_key(ca_file: Path):
    assert security_options({}) == {"protocol": "PLAINTEXT"}
    assert security_options({**SCRAM, "ssl.ca.location": str(ca_file)}) == {
        "protocol": "SASL_SSL",
        "mechanism": "SCRAM-SHA-512",
        "username": "clicks",
        "password": "s3cret-pw",
        "check_hostname": "none",
        "cafile": str(ca_file),
    }
    refused = {
        "'sasl.oauthbearer.method' is not a setting the stream worker takes": {
            "security.protocol": "SASL_SSL",
            "sasl.oauthbearer.method": "oidc",
        },
        "security.protocol 'TLS' is not one of": {"security.protocol": "TLS"},
        "sasl.mechanism 'OAUTHBEARER' is not one of": {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "OAUTHBEARER",
        },
        "PLAIN needs sasl.username and sasl.password": {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.username": "u",
        },
        "sasl.* settings need security.protocol SASL_PLAINTEXT or SASL_SSL, not SSL": {
            "security.protocol": "SSL",
            "sasl.username": "u",
        },
        "ssl.* settings need security.protocol SSL or SASL_SSL, not PLAINTEXT": {
            "ssl.ca.location": str(ca_file)
        },
        "ssl.ca.location '/no/such.pem' is not a file": {
            "security.protocol": "SSL",
            "ssl.ca.location": "/no/such.pem",
        },
    }
    for reason, security in refused.items():
        with pytest.raises(ValueError, match=reason.replace("*", r"\*").replace("(", r"\(")):
            security_options(security)


def test_faust_is_given_the_credentials_the_settings_describe(
    stream_python: Path, tmp_path: Path, ca_file: Path
):
    """In the worker's interpreter: its config read as the worker reads it (the settings from its
    environment), its faust app built, and what faust hands aiokafka for each setting."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "run_dir": str(tmp_path / "run"),
                "job": "j",
                "dataset": "d",
                "topic": "t",
                "events_topic": "e",
                "bootstrap": "127.0.0.1:9",
                "group": "g",
                "time_field": "ts",
                "lateness_s": 0,
                "web_port": 6067,
                "output": str(tmp_path / "w" / "{partition}"),
                "topics_dir": str(REPO_ROOT / "topics"),
            }
        )
    )
    probe = """
import json, sys
from pathlib import Path
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from coordinator.streamjob import build_app, load_config
app = build_app(load_config(Path(sys.argv[1])))
credentials = app.conf.broker_credentials
auth = credentials_to_aiokafka_auth(credentials)
context = auth.pop("ssl_context", None)
cas = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()] if context else None
print(json.dumps({"credentials": type(credentials).__name__, "auth": auth,
                  "check_hostname": getattr(context, "check_hostname", None), "cas": cas}))
"""

    def faust_gets(security: dict[str, str]) -> dict:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "COORD_STREAM_KAFKA_SECURITY": json.dumps(security),
        }
        done = subprocess.run(
            [str(stream_python), "-c", probe, str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.splitlines()[-1])

    scram = faust_gets({**SCRAM, "ssl.ca.location": str(ca_file)})
    assert scram == {
        "credentials": "SASLCredentials",
        "auth": {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "clicks",
            "sasl_plain_password": "s3cret-pw",
        },
        "check_hostname": False,
        "cas": [{"commonName": "clicks-ca"}],
    }
    plain = faust_gets({"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u", "sasl.password": "p"})
    assert plain["auth"] == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }
    assert plain["cas"] is None
    tls = faust_gets({"security.protocol": "SSL", "ssl.ca.location": str(ca_file)})
    assert (tls["credentials"], tls["auth"], tls["check_hostname"]) == (
        "SSLCredentials",
        {"security_protocol": "SSL"},
        True,
    )
    assert faust_gets({})["auth"] == {"security_protocol": "PLAINTEXT"}


def test_the_settings_travel_in_the_workers_environment_not_its_config_file(tmp_path: Path):
    """The worker here is a script that writes down what its environment holds and exits."""
    seen = tmp_path / "seen.json"
    worker = tmp_path / "python"
    worker.write_text(f'#!/bin/sh\nprintf "%s" "$COORD_STREAM_KAFKA_SECURITY" > {seen}\nexit 3\n')
    worker.chmod(0o755)
    settings = Settings(home=tmp_path / "home", bus="local", kafka_security=SCRAM)
    settings.home.mkdir()
    with StateStore(settings.resolved_state_url()) as store:
        supervisor = supervisor_for(parse_spec(SPEC % worker), "clicks_hourly", settings, store).start()
        try:
            deadline = time.monotonic() + 10
            while not seen.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            supervisor.stop()
    assert json.loads(seen.read_text()) == SCRAM
    assert "s3cret-pw" not in (supervisor.folder / "config.json").read_text()


def test_a_setting_the_worker_cannot_take_stops_the_service_at_start(tmp_path: Path):
    settings = Settings(
        home=tmp_path / "home", bus="local", kafka_security={"sasl.oauthbearer.method": "oidc"}
    )
    settings.home.mkdir()
    spec = parse_spec(SPEC % sys.executable)
    with Service(spec, settings, log_runs=False) as service, pytest.raises(SettingsError) as refused:
        service.run(until_idle=True, timeout_s=10)
    assert str(refused.value).startswith(
        "stream job 'clicks_hourly': COORD_KAFKA_SECURITY: 'sasl.oauthbearer.method' is not a setting"
    )


def test_a_plaintext_setting_runs_the_worker_on_the_broker(
    kafka_bootstrap: str, topics: dict, tmp_path: Path
):
    from confluent_kafka import Producer

    settings = kafka_settings(
        tmp_path, kafka_bootstrap, topics, kafka_security={"security.protocol": "PLAINTEXT"}
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    folder = settings.home / "streams" / "clicks_hourly"

    def scenario(service: Service) -> None:
        for minute in (10, 70):
            producer.produce(topics["clicks"], json.dumps({"ts": DAY + minute * 60}).encode(), partition=0)
        producer.flush(30)
        wait_for("hour 00 closed", lambda: state(folder).get("announced") == ["2024-06-01T00"])

    serve_during(stream_spec(topics["clicks"], "lateness_s: 0"), settings, scenario)
