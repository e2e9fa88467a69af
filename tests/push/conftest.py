"""Push fixtures: one `Backend` per destination database, with the SQL each test needs to
count touched rows (a trigger counter) and to inject a failure (a trigger raising on one key)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import unique


@dataclass
class Backend:
    name: str
    url: str  # SQLAlchemy URL (the push accepts it as is)
    engine: sa.Engine

    def q(self, ident: str) -> str:
        return self.engine.dialect.identifier_preparer.quote_identifier(ident)

    def exec(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            for s in statements:
                conn.exec_driver_sql(s)

    def rows(self, table: str, order: str) -> list[tuple]:
        with self.engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(f"SELECT * FROM {self.q(table)} ORDER BY {self.q(order)}")
            ]

    def scalar(self, statement: str) -> object:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(statement).scalar()

    def count_touches(self, table: str) -> None:
        """A `touched` counter bumped by row triggers on every insert, update and delete of `table`."""
        t, c = self.q(table), self.q(f"touched_{table}")
        self.exec(f"CREATE TABLE {c} (n integer NOT NULL)", f"INSERT INTO {c} VALUES (0)")
        if self.name == "postgres":
            fn = self.q(f"bump_{table}")
            self.exec(
                f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN UPDATE {c} SET n = n + 1; RETURN NULL; END $$",
                f"CREATE TRIGGER {self.q('tr_' + table)} AFTER INSERT OR UPDATE OR DELETE ON {t} "
                f"FOR EACH ROW EXECUTE FUNCTION {fn}()",
            )
        else:
            for event in ("INSERT", "UPDATE", "DELETE"):
                trig = self.q(f"tr_{event.lower()}_{table}")
                body = f"UPDATE {c} SET n = n + 1"
                body = f"BEGIN {body}; END" if self.name == "sqlite" else body
                self.exec(f"CREATE TRIGGER {trig} AFTER {event} ON {t} FOR EACH ROW {body}")

    def touched(self, table: str) -> int:
        return int(self.scalar(f"SELECT n FROM {self.q('touched_' + table)}"))

    def fail_on_key(self, table: str, column: str, value: int) -> None:
        """A trigger that raises when a row with `column` = `value` is written."""
        t, col, trig = self.q(table), self.q(column), self.q(f"fail_{table}")
        if self.name == "postgres":
            fn = self.q(f"failfn_{table}")
            self.exec(
                f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.{col} = {value} THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$",
                f"CREATE TRIGGER {trig} BEFORE INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {fn}()",
            )
        elif self.name == "mysql":
            for event in ("INSERT", "UPDATE"):
                self.exec(
                    f"CREATE TRIGGER {self.q(f'fail_{event}_{table}')} BEFORE {event} ON {t} FOR EACH ROW "
                    f"IF NEW.{col} = {value} THEN SIGNAL SQLSTATE '45000' "
                    f"SET MESSAGE_TEXT = 'injected failure'; END IF"
                )
        else:
            for event in ("INSERT", "UPDATE"):
                self.exec(
                    f"CREATE TRIGGER {self.q(f'fail_{event}_{table}')} BEFORE {event} ON {t} FOR EACH ROW "
                    f"WHEN NEW.{col} = {value} BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )

    def drop_failure(self, table: str) -> None:
        if self.name == "postgres":
            self.exec(f"DROP TRIGGER {self.q('fail_' + table)} ON {self.q(table)}")
        else:
            for event in ("INSERT", "UPDATE"):
                self.exec(f"DROP TRIGGER {self.q(f'fail_{event}_{table}')}")


BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    elif request.param == "mysql":
        url = request.getfixturevalue("mysql_url")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'product.db'}"
    engine = sa.create_engine(url)
    yield Backend(request.param, url, engine)
    engine.dispose()


@pytest.fixture
def table_name() -> str:
    return unique("scores")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
