"""Every error class of every driver the adapters call becomes the project's own at the edge.

As httpx's test of its exception mapping: each driver's exception classes are enumerated from
the driver itself (its modules' namespaces and every subclass below them), and for each one
this test asserts that

  1. the adapter's edge catches it (it is a subclass of what the edge's `except` names), or it
     is in NOT_RAISED below with the reason it never reaches an edge;
  2. the translator has decided about it: the push's verdict tables (is the connection lost,
     or did the server refuse?) name each class the driver defines explicitly — only psycopg's
     per-SQLSTATE classes go by their SQLSTATE, which the translator reads;
  3. an instance of it, through the translator, is the project's error (PushError, StoreError,
     BusError) with a message of one line.

A driver release that adds a class outside the roots the edges catch, or one the verdict tables
do not name, fails here until someone decides what it means.

    driver            edge (what catches, what translates)
    psycopg           push/destinations/postgres.py (psycopg_lost), store/store.py (store_error)
    ADBC              push/destinations/postgres.py (adbc_lost), push/sources.py (source_error)
    PyMySQL           push/destinations/mysql.py (pymysql_lost)
    sqlite3           push/destinations/sqlite.py, store/store.py (store_error)
    SQLAlchemy        store/store.py (store_error), push/sources.py (source_error)
    confluent-kafka   bus/kafka.py (_bus_error), push/destinations/kafka.py (commit_outcome)
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable
from types import ModuleType

import adbc_driver_manager
import confluent_kafka
import confluent_kafka.error
import confluent_kafka.serialization
import psycopg
import psycopg.errors
import pymysql.err
import pytest
import sqlalchemy.exc
from confluent_kafka import KafkaError, KafkaException

from coordinator.bus.kafka import _bus_error
from coordinator.errors import BusError, PushError, PushOutcomeUnknown, StoreError
from coordinator.push.destinations import failure
from coordinator.push.destinations.kafka import KAFKA_VERDICTS, commit_outcome
from coordinator.push.destinations.mysql import PYMYSQL_VERDICTS, pymysql_lost
from coordinator.push.destinations.postgres import ADBC_VERDICTS, PSYCOPG_VERDICTS, adbc_lost, psycopg_lost
from coordinator.push.destinations.sqlite import SQLITE_VERDICTS
from coordinator.push.sources import Source, source_error
from coordinator.store.store import DRIVER_ERRORS, store_error

# DB-API Warnings are a separate branch of every DB-API module; none of these drivers raises them
NOT_RAISED: dict[type, str] = {
    psycopg.Warning: "DB-API Warning: psycopg reports notices to handlers, never raises this",
    sqlite3.Warning: "DB-API Warning: sqlite3 never raises it",
    pymysql.err.Warning: "DB-API Warning: PyMySQL shows server warnings with SHOW WARNINGS only",
    adbc_driver_manager.Warning: "DB-API Warning: ADBC never raises it",
    psycopg.Rollback: "control flow: code inside conn.transaction() raises it to roll back; none does",
    sqlalchemy.exc.EmulatedDBAPIException: (
        "raised only by dialects that emulate a DB-API module (asyncpg, aiosqlite); the store's "
        "psycopg and sqlite3 errors come wrapped as DBAPIError"
    ),
}


def exception_classes(*modules: ModuleType) -> set[type[BaseException]]:
    """Every exception class the modules define or export, and every subclass of those, that
    belongs to the driver (not to Python itself: psycopg.errors re-exports asyncio's)."""
    found: set[type[BaseException]] = set()
    todo = [
        obj
        for m in modules
        for obj in vars(m).values()
        if isinstance(obj, type) and issubclass(obj, BaseException)
    ]
    while todo:
        cls = todo.pop()
        if cls in found or _stdlib(cls):
            continue
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def _stdlib(cls: type) -> bool:
    root = cls.__module__.split(".")[0]
    return root != "sqlite3" and (root in sys.stdlib_module_names or root == "builtins")


def raised(classes: Iterable[type[BaseException]]) -> list[type[BaseException]]:
    return sorted((c for c in classes if not issubclass(c, tuple(NOT_RAISED))), key=lambda c: c.__qualname__)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


# --------------------------------------------------------------- psycopg
PSYCOPG = exception_classes(psycopg, psycopg.errors)


def test_psycopg_classes_are_found() -> None:  # the enumeration itself works
    assert psycopg.errors.UniqueViolation in PSYCOPG and psycopg.errors.AdminShutdown in PSYCOPG
    assert len(PSYCOPG) > 200


@pytest.mark.parametrize("cls", raised(PSYCOPG), ids=lambda c: c.__qualname__)
def test_psycopg(cls: type[psycopg.Error]) -> None:
    assert issubclass(cls, psycopg.Error) and issubclass(cls, DRIVER_ERRORS)
    state = getattr(cls, "sqlstate", None)
    private = cls.__name__.startswith("_")  # psycopg's internal classes go by their public base
    assert state or private or cls in PSYCOPG_VERDICTS, f"{cls} is not in PSYCOPG_VERDICTS"
    exc = cls("the server said no\nDETAIL: on two lines")
    lost = psycopg_lost(exc)
    if state:  # per-SQLSTATE: the connection is lost exactly for classes 08 and 57P
        assert lost == failure.lost_sqlstate(state), (cls, state)
    one_line(failure.read_failed("describe 't'", exc, lost))
    assert isinstance(failure.write_failed("t", exc, lost), PushError)
    assert isinstance(store_error(exc), StoreError) and one_line(store_error(exc))


def test_psycopg_lost_connection_has_no_sqlstate() -> None:
    assert psycopg_lost(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert not psycopg_lost(psycopg.errors.UniqueViolation("duplicate key"))
    assert psycopg_lost(psycopg.errors.AdminShutdown("terminating connection"))


# --------------------------------------------------------------- ADBC
ADBC = exception_classes(adbc_driver_manager, adbc_driver_manager.dbapi)


def _adbc_instance(cls: type, message: str, status: object, **kw: str) -> adbc_driver_manager.Error:
    try:
        return cls(message, status_code=status, **kw)
    except TypeError:  # NotSupportedError has its status built in
        return cls(message, **kw)


@pytest.mark.parametrize("cls", raised(ADBC), ids=lambda c: c.__qualname__)
@pytest.mark.parametrize("status", list(adbc_driver_manager.AdbcStatusCode), ids=lambda s: s.name)
def test_adbc(cls: type[adbc_driver_manager.Error], status: adbc_driver_manager.AdbcStatusCode) -> None:
    assert issubclass(cls, adbc_driver_manager.Error)
    assert cls in ADBC_VERDICTS, f"{cls} is not in ADBC_VERDICTS"
    exc = _adbc_instance(cls, "IO: [libpq] Failed to execute COPY\n\tThis probably means", status)
    lost = adbc_lost(exc)
    if ADBC_VERDICTS[cls] == failure.BY_STATE:
        assert lost == (exc.status_code in (status.IO, status.TIMEOUT, status.CANCELLED))
    one_line(failure.commit_failed("t", exc, lost, "push1"))
    assert isinstance(failure.commit_failed("t", exc, lost, "push1"), PushOutcomeUnknown) == lost
    one_line(source_error(Source("sql", "SELECT 1"), exc))
    server = _adbc_instance(cls, "duplicate key", status, sqlstate="23505")  # the server answered
    assert not adbc_lost(server)


# --------------------------------------------------------------- PyMySQL
PYMYSQL = exception_classes(pymysql.err)


@pytest.mark.parametrize("cls", raised(PYMYSQL), ids=lambda c: c.__qualname__)
def test_pymysql(cls: type[pymysql.err.MySQLError]) -> None:
    assert issubclass(cls, pymysql.err.MySQLError)
    assert cls in PYMYSQL_VERDICTS, f"{cls} is not in PYMYSQL_VERDICTS"
    for code, message in ((2013, "Lost connection to MySQL server during query"), (1062, "Duplicate entry")):
        exc = cls(code, message)
        lost = pymysql_lost(exc)
        if PYMYSQL_VERDICTS[cls] == failure.BY_STATE:
            assert lost == (code == 2013)
        one_line(failure.write_failed("t", exc, lost))
    assert pymysql_lost(pymysql.err.InterfaceError(0, ""))  # PyMySQL's closed connection


# --------------------------------------------------------------- sqlite3
SQLITE = exception_classes(sqlite3)


@pytest.mark.parametrize("cls", raised(SQLITE), ids=lambda c: c.__qualname__)
def test_sqlite3(cls: type[sqlite3.Error]) -> None:
    assert issubclass(cls, sqlite3.Error) and issubclass(cls, DRIVER_ERRORS)
    assert SQLITE_VERDICTS.get(cls) == failure.REFUSED, f"{cls} is not in SQLITE_VERDICTS"
    exc = cls("database is locked")
    one_line(failure.write_failed("t", exc, False))
    one_line(store_error(exc))


# --------------------------------------------------------------- SQLAlchemy
SQLALCHEMY = {c for c in exception_classes(sqlalchemy.exc) if not issubclass(c, Warning)}


def _sqlalchemy_instance(cls: type[BaseException]) -> BaseException:
    orig = psycopg.OperationalError("server closed the connection\n\tunexpectedly")
    shapes = (
        ("SELECT 1\nFROM t", {}, orig),
        ("message", "SELECT 1", {}, orig),
        ("message", "t"),
        ("message",),
    )
    for args in shapes:
        try:
            exc = cls(*args)
            str(exc)
            return exc
        except Exception:  # each class has its own constructor; the first that fits is used
            continue
    raise AssertionError(f"cannot build {cls}")


@pytest.mark.parametrize("cls", raised(SQLALCHEMY), ids=lambda c: c.__qualname__)
def test_sqlalchemy(cls: type[sqlalchemy.exc.SQLAlchemyError]) -> None:
    assert issubclass(cls, sqlalchemy.exc.SQLAlchemyError) and issubclass(cls, DRIVER_ERRORS)
    exc = _sqlalchemy_instance(cls)
    one_line(store_error(exc))
    one_line(source_error(Source("sql", "SELECT 1", url="sqlite://"), exc))


# --------------------------------------------------------------- confluent-kafka
KAFKA = exception_classes(confluent_kafka, confluent_kafka.error, confluent_kafka.serialization)


def _kafka_instance(cls: type[BaseException], error: KafkaError) -> BaseException:
    try:
        return cls(error)
    except TypeError:
        return cls("a message\non two lines")


# what bus/kafka.py's edge catches: the client's errors, and RuntimeError (a closed client)
BUS_CAUGHT = (KafkaException, RuntimeError)
SHARE_CONSUMER_ONLY = {confluent_kafka.ConcurrentModificationException, confluent_kafka.IllegalStateException}


@pytest.mark.parametrize("cls", raised(KAFKA), ids=lambda c: c.__qualname__)
@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._TRANSPORT, "broker down", retriable=True),
        KafkaError(KafkaError._FATAL, "producer fenced", fatal=True),
        KafkaError(KafkaError.INVALID_TXN_STATE, "abort", txn_requires_abort=True),
    ],
    ids=["retriable", "fatal", "abortable"],
)
def test_confluent_kafka(cls: type[KafkaException], error: KafkaError) -> None:
    assert issubclass(cls, BUS_CAUGHT)
    if cls in SHARE_CONSUMER_ONLY:  # RuntimeErrors a ShareConsumer raises; the push's producer cannot
        assert isinstance(_bus_error("poll", cls("closed")), BusError)
        return
    assert issubclass(cls, KafkaException)
    assert failure.verdict(_kafka_instance(cls, error), KAFKA_VERDICTS) and any(
        c in KAFKA_VERDICTS for c in cls.__mro__[: cls.__mro__.index(KafkaException) + 1]
    )
    assert cls in KAFKA_VERDICTS or cls.__name__.startswith("_"), f"{cls} is not in KAFKA_VERDICTS"
    exc = _kafka_instance(cls, error)
    bus = _bus_error("produce", exc)
    assert isinstance(bus, BusError)
    assert commit_outcome(exc) in ("retry", "aborted", "unknown")
    if type(exc) is KafkaException:
        expected = {"retriable": "retry", "fatal": "unknown", "abortable": "aborted"}
        kind = "retriable" if error.retriable() else "fatal" if error.fatal() else "abortable"
        assert commit_outcome(exc) == expected[kind]
        assert bus.retriable == (kind == "retriable")


def test_a_class_a_driver_adds_is_found_and_unmapped() -> None:
    """What a driver release adding a class looks like to this test: found, and in no table."""

    class ReplicaLagged(pymysql.err.OperationalError):
        pass

    assert ReplicaLagged in exception_classes(pymysql.err)
    assert ReplicaLagged not in PYMYSQL_VERDICTS
