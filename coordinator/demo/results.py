"""Read back what the journey produced: rows pushed by this invocation and the product table.

Rows pushed come from the push runs that finished during this invocation (a hook on the engine
reads the counts each push reports); the table's contents come from the product database
itself, so the summary says what a website reading `user_scores` would see.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import String, create_engine, func, select, table, text
from sqlalchemy import column as sql_column
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from coordinator.demo.settings import DemoOptions
from coordinator.demo.summary import DemoSummary, RunSummary
from coordinator.hooks import Hook
from coordinator.launchers.base import RunResult
from coordinator.settings import Settings
from coordinator.spec import PipelineSpec
from coordinator.store.store import RunRow

PUSH_KIND = "reverse_etl"
WRITTEN = ("inserted", "updated", "deleted")
DAY_COLUMN = "score_date"  # the day a score is for, in the example's user_scores table


def sqlalchemy_url(url: str) -> str:
    """The push destinations accept `postgresql://`; SQLAlchemy needs the driver named."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("mysql://", "mariadb://")):
        return "mysql+pymysql://" + url.split("://", 1)[1]
    return url


def masked(url: str) -> str:
    return make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)


def push_target(spec: PipelineSpec) -> tuple[str, str, str]:
    """(push job, destination URL, table) of the example's reverse-ETL job."""
    for name, job in spec.jobs.items():
        if job.kind == PUSH_KIND:
            dest = job.settings["destination"]
            return name, str(dest["url"]), str(dest["table"])
    raise ValueError("the spec has no reverse_etl job")


class PushCounter(Hook):
    """Adds up the rows each successful push wrote (its run details), during this invocation."""

    def __init__(self, jobs: Sequence[str]) -> None:
        self.jobs = set(jobs)
        self.rows = 0
        self._lock = threading.Lock()

    def after_finish(self, run: RunRow, result: RunResult) -> None:
        if result.succeeded and run.job in self.jobs:
            with self._lock:
                self.rows += sum(int(result.details.get(name, 0) or 0) for name in WRITTEN)


@dataclass(frozen=True)
class TableFacts:
    rows: int = 0  # rows in the table
    users_on_day: int = 0  # distinct users scored for the day asked
    sample: list[dict[str, object]] = field(default_factory=list)  # a few rows of that day


def table_facts(url: str, name: str, day_column: str, day: str, sample_rows: int = 5) -> TableFacts:
    """What a website reading the table sees; empty facts when the table does not exist (yet)."""
    engine = create_engine(sqlalchemy_url(url))
    t = table(name, sql_column("user_id"), sql_column(day_column))
    on_day = func.cast(t.c[day_column], String) == day
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(t)).scalar() or 0
            users = conn.execute(select(func.count(func.distinct(t.c.user_id))).where(on_day)).scalar() or 0
            sample = (
                conn.execute(
                    select(text("*")).select_from(t).where(on_day).order_by(t.c.user_id).limit(sample_rows)
                )
                .mappings()
                .all()
            )
    except SQLAlchemyError:
        return TableFacts()
    finally:
        engine.dispose()
    return TableFacts(int(rows), int(users), [{k: _plain(v) for k, v in row.items()} for row in sample])


def _plain(value: object) -> object:
    """JSON-friendly values: dates as ISO text, decimals as floats."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def look_command(url: str, name: str) -> str:
    query = f"select * from {name} order by user_id limit 5"
    parsed = make_url(sqlalchemy_url(url))
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite3 {shlex.quote(parsed.database or '')} {shlex.quote(query)}"
    if parsed.get_backend_name() == "postgresql":
        plain = parsed.set(drivername="postgresql").render_as_string(hide_password=True)
        return f"psql {shlex.quote(plain)} -c {shlex.quote(query)}"
    return query


def build_summary(
    options: DemoOptions,
    settings: Settings,
    spec: PipelineSpec,
    runs: list[RunSummary],
    started: float,
    launched: int,
    rows_pushed: int,
    day_column: str = DAY_COLUMN,
) -> DemoSummary:
    _, url, name = push_target(spec)
    latest = options.end_day.isoformat()
    facts = table_facts(url, name, day_column, latest)
    return DemoSummary(
        succeeded=bool(runs) and all(r.state == "succeeded" for r in runs) and facts.users_on_day > 0,
        home=str(settings.home),
        product_db=masked(url),
        table=name,
        latest_day=latest,
        runs_launched=launched,
        rows_pushed=rows_pushed,
        rows_in_table=facts.rows,
        users_scored_latest_day=facts.users_on_day,
        sample=facts.sample,
        runs=runs,
        seconds=round(time.time() - started, 1),
        look=look_command(url, name),
    )
