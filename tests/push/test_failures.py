"""The push's error path on real servers: a product database stopped mid-push, a COMMIT whose
answer is lost, a COMMIT the server refuses. Each ends in one PushError of one line that tells
what became of the push, and the next push leaves the destination equal to the source."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from coordinator.errors import PushError, PushOutcomeUnknown
from coordinator.push import DestinationSettings, push
from tests.conftest import missing, unique
from tests.push.conftest import Backend
from tests.push.faults import CommitAckLost, PrivatePostgres

N = 3_000


def scores(n: int = N, bump: frozenset[int] = frozenset()) -> pa.Table:
    return pa.table(
        {
            "user_id": list(range(n)),
            "score": [i / 4 + (100 if i in bump else 0) for i in range(n)],
        }
    )


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    return text


# --------------------------------------------------------------- a product PostgreSQL stopped mid-push
@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres()
        server.start()
    except (FileNotFoundError, OSError, Exception) as exc:  # no binaries, or initdb/pg_ctl failed
        missing("PostgreSQL server binaries", str(exc))
    yield server
    server.close()


def _sleeping_trigger(conn: psycopg.Connection, table: str, on_key: int) -> None:
    """A trigger that holds the write of one row for a minute: the test stops the server meanwhile."""
    conn.execute(
        f"CREATE FUNCTION hold_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.user_id = {on_key} THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$"
    )
    conn.execute(
        f"CREATE TRIGGER hold BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION hold_{table}()"
    )


def _stop_when(server: PrivatePostgres, pattern: str, stopped: list[str]) -> threading.Thread:
    """Stop `server` (immediately, as a crash) once a backend runs a statement LIKE `pattern`
    and sleeps in the trigger: the push is inside that statement."""

    def watch() -> None:
        with psycopg.connect(server.url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                found = conn.execute(
                    "SELECT query FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE %s",
                    (pattern,),
                ).fetchone()
                if found:
                    stopped.append(found[0])
                    break
                time.sleep(0.05)
        server.stop_now()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _rows(url: str, table: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT user_id, score FROM {table} ORDER BY user_id").fetchall()


@pytest.mark.postgres
def test_server_stopped_during_copy(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    table = unique("t")
    with psycopg.connect(private_pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (user_id bigint PRIMARY KEY, score double precision)")
        _sleeping_trigger(conn, table, on_key=N - 10)
    dest = DestinationSettings(url=private_pg.url, table=table)
    stopped: list[str] = []
    watcher = _stop_when(private_pg, "COPY %FROM STDIN%", stopped)
    with pytest.raises(PushError) as caught:  # a first push into an empty table: binary COPY straight in
        push(scores(), dest, job="j", key=["user_id"], state_dir=tmp_path)
    watcher.join(60)
    assert stopped, "the push never reached the COPY"
    message = one_line(caught.value)
    assert "rolled back" in message and "connection was lost before COMMIT" in message
    assert not isinstance(caught.value, PushOutcomeUnknown)

    private_pg.start()
    assert _rows(private_pg.url, table) == []  # nothing of the push is there
    with psycopg.connect(private_pg.url, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER hold ON {table}")
    r = push(scores(), dest, job="j", key=["user_id"], state_dir=tmp_path)
    assert (r.inserted, r.full) == (N, True)
    assert _rows(private_pg.url, table) == [(i, i / 4) for i in range(N)]


@pytest.mark.postgres
def test_server_stopped_during_merge(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    table = unique("t")
    with psycopg.connect(private_pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (user_id bigint PRIMARY KEY, score double precision)")
    dest = DestinationSettings(url=private_pg.url, table=table)
    push(scores(), dest, job="j", key=["user_id"], state_dir=tmp_path)
    before = _rows(private_pg.url, table)
    with psycopg.connect(private_pg.url, autocommit=True) as conn:
        _sleeping_trigger(conn, table, on_key=7)
    changed = frozenset({3, 7, 2000})
    stopped: list[str] = []
    watcher = _stop_when(private_pg, "%WITH r AS (INSERT%", stopped)  # ADBC wraps it in COPY
    with pytest.raises(PushError) as caught:  # a diff push: staged, then one merge statement
        push(scores(N + 2, bump=changed), dest, job="j", key=["user_id"], state_dir=tmp_path)
    watcher.join(60)
    assert stopped, "the push never reached the merge"
    message = one_line(caught.value)
    assert "rolled back" in message and "connection was lost before COMMIT" in message

    private_pg.start()
    assert _rows(private_pg.url, table) == before
    with psycopg.connect(private_pg.url, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER hold ON {table}")
    r = push(scores(N + 2, bump=changed), dest, job="j", key=["user_id"], state_dir=tmp_path)
    assert (r.inserted, r.updated, r.full) == (2, len(changed), False)  # the marker still trusts the state
    assert _rows(private_pg.url, table) == [(i, i / 4 + (100 if i in changed else 0)) for i in range(N + 2)]


# --------------------------------------------------------------- COMMIT sent, its answer lost
def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.mark.parametrize(
    "backend",
    [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)],
    indirect=True,
)
def test_lost_commit_answer_is_outcome_unknown_then_reconciled(
    backend: Backend, table_name: str, state_dir: Path
) -> None:
    direct = DestinationSettings(url=backend.url, table=table_name)
    push(scores(500), direct, job="j", key=["user_id"], create_table=True, state_dir=state_dir)
    parts = urlsplit(backend.url)
    proxy = CommitAckLost(parts.hostname or "127.0.0.1", parts.port or 0)
    try:
        changed = frozenset({1, 2, 499})
        with pytest.raises(PushOutcomeUnknown) as caught:
            push(
                scores(510, bump=changed),
                DestinationSettings(url=_through(backend.url, proxy.port), table=table_name),
                job="j",
                key=["user_id"],
                state_dir=state_dir,
                progress=lambda step, done, total: proxy.arm() if step == "write" else None,
            )
    finally:
        proxy.close()
    message = one_line(caught.value)
    assert "outcome unknown; the next push reconciles by its marker" in message
    assert "rolled back" not in message
    assert proxy.committed.is_set()  # the server did commit: the push's rows are there
    want = [(i, i / 4 + (100 if i in changed else 0)) for i in range(510)]
    assert backend.rows(table_name, "user_id") == want

    # the state file still knows the push before; the marker names the one whose answer was lost
    r = push(scores(510, bump=changed), direct, job="j", key=["user_id"], state_dir=state_dir)
    assert r.full and "not the one" in r.reason
    assert (r.inserted, r.updated, r.unchanged) == (0, 0, 510)
    assert backend.rows(table_name, "user_id") == want
    r = push(scores(510, bump=changed | {5}), direct, job="j", key=["user_id"], state_dir=state_dir)
    assert (r.full, r.updated) == (False, 1)  # and diff pushes are back


# --------------------------------------------------------------- COMMIT refused
@pytest.mark.postgres
def test_commit_refused_is_rolled_back(postgres_url: str, tmp_path: Path) -> None:
    table, parent = unique("t"), unique("p")
    plain = postgres_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {parent} (id bigint PRIMARY KEY)")
        conn.execute(f"INSERT INTO {parent} SELECT generate_series(0, 99)")
        conn.execute(  # checked at COMMIT, not at the statement
            f"CREATE TABLE {table} (user_id bigint PRIMARY KEY REFERENCES {parent} "
            "DEFERRABLE INITIALLY DEFERRED, score double precision)"
        )
    dest = DestinationSettings(url=postgres_url, table=table)
    push(scores(100), dest, job="j", key=["user_id"], state_dir=tmp_path)
    with pytest.raises(PushError) as caught:
        push(scores(101, bump=frozenset({4})), dest, job="j", key=["user_id"], state_dir=tmp_path)
    message = one_line(caught.value)
    assert "refused at COMMIT and rolled back" in message and "foreign key" in message
    assert not isinstance(caught.value, PushOutcomeUnknown)
    assert _rows(plain, table) == [(i, i / 4) for i in range(100)]


# --------------------------------------------------------------- MariaDB: the connection killed mid-push
def _kill_when(b: Backend, pattern: str, killed: list[str]) -> threading.Thread:
    """KILL the connection running a statement LIKE `pattern` (from another connection, as an
    operator or a failover would), once it sleeps in the trigger."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        with b.engine.connect() as conn:
            while time.monotonic() < deadline and not killed:
                found = conn.exec_driver_sql(
                    "SELECT ID, INFO FROM information_schema.PROCESSLIST "
                    "WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
                    (pattern,),
                ).fetchone()
                if found:
                    killed.append(found[1])
                    conn.exec_driver_sql(f"KILL CONNECTION {int(found[0])}")
                    break
                time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
def test_mysql_connection_killed_during_the_merge(backend: Backend, table_name: str, state_dir: Path) -> None:
    t = backend.q(table_name)
    backend.exec(f"CREATE TABLE {t} (user_id BIGINT PRIMARY KEY, score DOUBLE)")
    dest = DestinationSettings(url=backend.url, table=table_name)
    push(scores(), dest, job="j", key=["user_id"], state_dir=state_dir)
    before = backend.rows(table_name, "user_id")
    backend.exec(
        f"CREATE TRIGGER {backend.q('hold_' + table_name)} BEFORE UPDATE ON {t} FOR EACH ROW "
        "BEGIN IF NEW.user_id = 7 THEN DO SLEEP(60); END IF; END"
    )
    changed = frozenset({3, 7, 2000})
    killed: list[str] = []
    watcher = _kill_when(backend, "%SLEEP(60)%", killed)  # the merge, inside the trigger
    with pytest.raises(PushError) as caught:
        push(scores(N + 2, bump=changed), dest, job="j", key=["user_id"], state_dir=state_dir)
    watcher.join(60)
    assert killed, "the push never reached the merge"
    message = one_line(caught.value)
    assert "rolled back" in message and "connection was lost before COMMIT" in message
    assert backend.rows(table_name, "user_id") == before

    backend.exec(f"DROP TRIGGER {backend.q('hold_' + table_name)}")
    r = push(scores(N + 2, bump=changed), dest, job="j", key=["user_id"], state_dir=state_dir)
    assert (r.inserted, r.updated, r.full) == (2, len(changed), False)
    assert backend.rows(table_name, "user_id") == [
        (i, i / 4 + (100 if i in changed else 0)) for i in range(N + 2)
    ]


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
def test_mysql_first_push_killed_drops_the_table_it_created(
    backend: Backend, table_name: str, state_dir: Path
) -> None:
    dest = DestinationSettings(url=backend.url, table=table_name)
    killed: list[str] = []
    # the staging rows go in by executemany: kill the push while it loads them
    watcher = _kill_when(backend, "INSERT INTO `coord_stage`%", killed)
    big = scores(400_000)
    with pytest.raises(PushError) as caught:
        push(big, dest, job="j", key=["user_id"], create_table=True, state_dir=state_dir)
    watcher.join(60)
    assert killed, "the push never loaded its stage"
    message = one_line(caught.value)
    assert "connection was lost before COMMIT" in message and "dropped again" in message
    assert table_name not in set(sa.inspect(backend.engine).get_table_names())
