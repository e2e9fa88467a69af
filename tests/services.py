"""Where the test session's Kafka, PostgreSQL and MariaDB come from, chosen once per service.

1. The endpoint variables (KAFKA_BOOTSTRAP_SERVERS, COORD_TEST_POSTGRES_URL,
   COORD_TEST_MYSQL_URL) name a service: it is used as given. `scripts/services env` exports
   them for the services `scripts/services up` started (CI's path: its machine has no Docker
   engine), and anyone may point them at a service of their own.
2. Otherwise, where a Docker engine answers, the service is started with testcontainers for
   the session (Kafka in KRaft mode, PostgreSQL, MariaDB) and removed at its end: on a laptop
   with Docker, `pytest` alone brings up what it needs.
3. Otherwise the service is missing: the fixture fails in CI and skips elsewhere, saying how
   to start it (`scripts/services up`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Literal

ENDPOINTS = {
    "kafka": "KAFKA_BOOTSTRAP_SERVERS",
    "postgres": "COORD_TEST_POSTGRES_URL",
    "mysql": "COORD_TEST_MYSQL_URL",
}
Source = Literal["environment", "testcontainers", "missing"]

# The images the containers run: what docker-compose.yml runs, where it runs one of them.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"       # KRaft needs 7.0 or later (testcontainers' check)
POSTGRES_IMAGE = "postgres:16"
MARIADB_IMAGE = "mariadb:11"
USER = PASSWORD = "coord"
DATABASE = "coord_test"


def choose(service: str, environ: Mapping[str, str], docker_answers: Callable[[], bool]) -> Source:
    """Where `service` comes from: its endpoint variable, else testcontainers, else nowhere.
    `docker_answers` is asked only when no variable is set (asking an engine takes time)."""
    if environ.get(ENDPOINTS[service]):
        return "environment"
    return "testcontainers" if docker_answers() else "missing"


def docker_answers(timeout_s: float = 3.0) -> bool:
    """True when a Docker engine (DOCKER_HOST, else the default socket) answers a ping."""
    try:
        import docker
    except ImportError:  # testcontainers (and its docker client) not installed: no engine for us
        return False
    try:
        client = docker.from_env(timeout=timeout_s)
    except docker.errors.DockerException:  # no socket, a bad DOCKER_HOST
        return False
    try:
        return bool(client.ping())
    except Exception:  # the client raises requests' and its own errors alike: no engine here
        return False
    finally:
        client.close()


@dataclass
class Containers:
    """The session's containers, each started on first use and removed when the session ends."""

    stack: ExitStack = field(default_factory=ExitStack)
    endpoints: dict[str, str] = field(default_factory=dict)

    def endpoint(self, service: str) -> str:
        if service not in self.endpoints:
            self.endpoints[service] = getattr(self, f"_{service}")()
        return self.endpoints[service]

    def _kafka(self) -> str:
        from testcontainers.community.kafka import KafkaContainer

        kafka = self.stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
        return kafka.get_bootstrap_server()

    def _postgres(self) -> str:
        from testcontainers.community.postgres import PostgresContainer

        pg = PostgresContainer(POSTGRES_IMAGE, username=USER, password=PASSWORD, dbname=DATABASE, driver=None)
        return self.stack.enter_context(pg).get_connection_url()

    def _mysql(self) -> str:
        from testcontainers.community.mysql import MySqlContainer

        # root, because the fixtures create a database per test module
        db = MySqlContainer(MARIADB_IMAGE, username="root", root_password=PASSWORD, password=PASSWORD,
                            dbname=DATABASE)
        url = self.stack.enter_context(db).get_connection_url()
        return "mysql://" + url.split("://", 1)[1]  # the fixtures' form: mysql://user:pw@host:port/db

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a container already gone is what we wanted
            self.stack.close()


def session_containers() -> Iterator[Containers]:
    containers = Containers()
    try:
        yield containers
    finally:
        containers.close()
