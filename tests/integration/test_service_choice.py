"""Where the session's Kafka, PostgreSQL and MariaDB come from (tests/services.py).

CI here has no Docker engine, so the testcontainers path itself is not run in CI; what is
tested is the choice: endpoint variables first (the scripts/services path, taken in CI),
testcontainers only where an engine answers, and the probe's answer for what is not an engine.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import conftest, services


def never_asked() -> bool:
    raise AssertionError("the Docker engine is asked only when no endpoint variable is set")


def test_endpoint_variables_come_first() -> None:
    environ = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
               "COORD_TEST_POSTGRES_URL": "postgresql://coord:coord@127.0.0.1:15432/coord_test",
               "COORD_TEST_MYSQL_URL": "mysql://coord:coord@127.0.0.1:13306/coord_test"}
    for service in services.ENDPOINTS:
        assert services.choose(service, environ, never_asked) == "environment"


def test_testcontainers_only_where_a_docker_engine_answers() -> None:
    for service in services.ENDPOINTS:
        assert services.choose(service, {}, lambda: True) == "testcontainers"
        assert services.choose(service, {}, lambda: False) == "missing"
        # an empty variable names nothing
        assert services.choose(service, {services.ENDPOINTS[service]: ""}, lambda: False) == "missing"
    assert services.choose("kafka", {"COORD_TEST_POSTGRES_URL": "postgresql://x"}, lambda: True) \
        == "testcontainers"                                      # each service is chosen on its own


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_probe_says_no_for_what_is_not_a_docker_engine(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")       # no such socket
    assert services.docker_answers(timeout_s=2) is False
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")           # nothing listens
    assert services.docker_answers(timeout_s=2) is False

    class NotDocker(BaseHTTPRequestHandler):  # a web server, not an engine
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotDocker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_address[1]}")
        assert services.docker_answers(timeout_s=2) is False
    finally:
        server.shutdown()
        server.server_close()


def test_the_session_header_and_the_fixtures_follow_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("COORD_TEST_POSTGRES_URL", "postgresql://u:p@127.0.0.1:1/d")
    monkeypatch.setenv("COORD_TEST_MYSQL_URL", "mysql://u:p@127.0.0.1:1/d")
    header = conftest.pytest_report_header(None)   # type: ignore[arg-type]  # the hook reads no config
    assert header == ("services: kafka from endpoint variable, postgres from endpoint variable, "
                      "mysql from endpoint variable")
    assert conftest.service_endpoint("kafka", "Kafka", None) == "127.0.0.1:1"   # type: ignore[arg-type]

    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    if conftest._docker_answers():
        pytest.skip("a Docker engine answers here: the missing path cannot be shown")
    outcome = pytest.fail.Exception if conftest.IN_CI else pytest.skip.Exception
    with pytest.raises(outcome, match="KAFKA_BOOTSTRAP_SERVERS is not set and no Docker engine answers"):
        conftest.service_endpoint("kafka", "Kafka", None)   # type: ignore[arg-type]
