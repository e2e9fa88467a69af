"""Shared fixtures: real services, one per session; fresh names per test or module.

Kafka, PostgreSQL and MariaDB come from their endpoint variables (`scripts/services up`, then
`eval "$(scripts/services env)"`), else from testcontainers where a Docker engine answers
(tests/services.py says the order and why); the session's header says which. The Spark
standalone cluster and the MLflow tracking server come from `scripts/services` only.
In CI (CI=true) a missing service fails the test; elsewhere it is skipped with a how-to.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests import services

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HOWTO = "start it with `scripts/services up` and `eval \"$(scripts/services env)\"`"


def missing(service: str, detail: str) -> None:
    message = f"{service} is not available ({detail}); {HOWTO}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- where services come from
@cache
def _docker_answers() -> bool:
    return services.docker_answers()


def _source(service: str) -> services.Source:
    return services.choose(service, os.environ, _docker_answers)


def pytest_report_header(config: pytest.Config) -> str:
    """One line in the session's log saying which path brought up each service."""
    where = {"environment": "endpoint variable", "testcontainers": "testcontainers (Docker)",
             "missing": "none (not set, no Docker engine)"}
    return "services: " + ", ".join(f"{s} from {where[_source(s)]}" for s in services.ENDPOINTS)


@pytest.fixture(scope="session")
def containers() -> Iterator[services.Containers]:
    yield from services.session_containers()


def service_endpoint(service: str, label: str, request: pytest.FixtureRequest) -> str:
    """The endpoint of `service` by the choice of tests/services.py, or `missing` saying why."""
    source = _source(service)
    if source == "environment":
        return os.environ[services.ENDPOINTS[service]]
    if source == "missing":
        missing(label, f"{services.ENDPOINTS[service]} is not set and no Docker engine answers")
    try:
        return request.getfixturevalue("containers").endpoint(service)
    except Exception as exc:  # an image that cannot be pulled, a container that never got ready
        missing(label, f"testcontainers could not start it: {exc}")
        raise


# --------------------------------------------------------------------------- Kafka
@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    bootstrap = service_endpoint("kafka", "Kafka", request)
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    except Exception as exc:  # the driver raises KafkaException; any failure means "not there"
        missing("Kafka", f"{bootstrap}: {exc}")
    return bootstrap


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic (3 partitions) for one test, deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    name = unique("t").replace("_", "-")
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture
def kafka_postgres(kafka_bootstrap: str, kafka_topic: str, postgres_url: str, tmp_path: Path) -> dict:
    """Settings keywords for a coordinator on the real broker (a fresh topic and its dead-letter
    topic) and the module's PostgreSQL store: `Settings(**kafka_postgres, instance_name=...)`."""
    return dict(
        home=tmp_path / "home",
        bus="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_events=kafka_topic,
        topic_dead_letter=kafka_topic + "-dlq",
        state_url=postgres_url,
    )


# --------------------------------------------------------------------------- SQL databases
def _with_path(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@pytest.fixture(scope="module")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL (postgresql+psycopg) of a fresh database for one test module."""
    base = service_endpoint("postgres", "PostgreSQL", request)
    import psycopg

    name = unique("coord_t")
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        missing("PostgreSQL", str(exc))
    url = _with_path(base, name)
    yield url.replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def mysql_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL (mysql+pymysql) of a fresh MariaDB database for one test module."""
    base = service_endpoint("mysql", "MariaDB", request)
    import pymysql

    parts = urlsplit(base)
    connect = dict(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                   password=parts.password or "", connect_timeout=10, autocommit=True)
    name = unique("coord_t")
    try:
        with pymysql.connect(**connect) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
    except pymysql.Error as exc:
        missing("MariaDB", str(exc))
    yield _with_path(base, name).replace("mysql://", "mysql+pymysql://", 1)
    with pymysql.connect(**connect) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


# --------------------------------------------------------------------------- Spark
@pytest.fixture(scope="session")
def spark():
    """One small local SparkSession for the whole test session."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing("Spark", "no Java runtime")
    from pyspark.sql import SparkSession

    # Python workers (UDFs, mlflow's spark_udf) must run this interpreter, not whatever
    # `python3` is first on PATH; pyspark reads only the environment for it.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    session = (
        SparkSession.builder.master("local[2]")
        .appName("coordinator-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


# --------------------------------------------------------------------------- MLflow
@dataclass(frozen=True)
class MlflowStore:
    tracking_uri: str
    artifact_root: Path


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowStore]:
    """A fresh MLflow tracking + registry store (SQLite) with artifacts in a temp folder."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment(unique("exp"), artifact_location=artifacts.as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    yield MlflowStore(uri, artifacts)
    mlflow.set_tracking_uri("")


@pytest.fixture(scope="session")
def mlflow_server() -> str:
    """The MLflow tracking server of `scripts/services up mlflow` (PostgreSQL backend store,
    artifacts served by it): what production talks to. Tests register models under fresh names."""
    import httpx

    uri = os.environ.get("COORD_TEST_MLFLOW_URI")
    if not uri:
        missing("MLflow tracking server", "COORD_TEST_MLFLOW_URI is not set")
    try:
        httpx.get(f"{uri}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        missing("MLflow tracking server", f"{uri}: {exc}")
    return uri
