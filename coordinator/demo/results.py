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

from sqlalchemy import String, create_engine, func, select, table
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
DAY_COLUMN = "score_date"          # the day a score is for, in the example's user_scores table


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


def table_counts(url: str, name: str, day_column: str, day: str) -> tuple[int, int]:
    """(rows in the table, distinct users scored for `day`); (0, 0) when the table is missing."""
    engine = create_engine(sqlalchemy_url(url))
    t = table(name, sql_column("user_id"), sql_column(day_column))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(t)).scalar() or 0
            users = conn.execute(select(func.count(func.distinct(t.c.user_id)))
                                 .where(func.cast(t.c[day_column], String) == day)).scalar() or 0
    except SQLAlchemyError:
        return 0, 0
    finally:
        engine.dispose()
    return int(rows), int(users)


def look_command(url: str, name: str) -> str:
    query = f"select * from {name} order by user_id limit 5"
    parsed = make_url(sqlalchemy_url(url))
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite3 {shlex.quote(parsed.database or '')} {shlex.quote(query)}"
    if parsed.get_backend_name() == "postgresql":
        plain = parsed.set(drivername="postgresql").render_as_string(hide_password=True)
        return f"psql {shlex.quote(plain)} -c {shlex.quote(query)}"
    return query


def build_summary(options: DemoOptions, settings: Settings, spec: PipelineSpec, runs: list[RunSummary],
                  started: float, rows_pushed: int, day_column: str = DAY_COLUMN) -> DemoSummary:
    _, url, name = push_target(spec)
    latest = options.end_day.isoformat()
    rows, users = table_counts(url, name, day_column, latest)
    return DemoSummary(
        succeeded=bool(runs) and all(r.state == "succeeded" for r in runs) and users > 0,
        home=str(settings.home), product_db=masked(url), table=name, latest_day=latest,
        rows_pushed=rows_pushed, rows_in_table=rows,
        users_scored_latest_day=users, runs=runs, seconds=round(time.time() - started, 1),
        look=look_command(url, name),
    )
