"""Push benchmark: 1,000,000 rows into PostgreSQL ($COORD_TEST_POSTGRES_URL; a database of its own).

Measures, on the same table shape (bigint primary key, two doubles, text, timestamptz):
  copy_rows_per_s        plain COPY into an empty table — the limit; the faster of ADBC's
                         adbc_ingest (binary COPY, what the push itself uses) and psycopg COPY
                         of Arrow-written CSV
  push_rows_per_s        the project's full upsert push (first push: empty table, no state)
  push_staged_rows_per_s a full push with no state into a full table (COPY to a temp stage +
                         one INSERT … ON CONFLICT over all rows; 1 % of them differ)
  to_sql_rows_per_s      pandas DataFrame.to_sql (method=None, SQLAlchemy + psycopg) on a
                         100,000-row sample, scaled to rows/s
  repush_1pct_s          a push after 1 % of the rows changed (hash 1M rows, diff, write 10k)
Each figure is the median of --repeats runs, COPY and push interleaved so they share the
machine's load (to_sql: of 2). Last line: one JSON object.

    python bench/push.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from coordinator.push import DestinationSettings, push

DDL = (
    "CREATE TABLE {t} (user_id bigint PRIMARY KEY, score double precision, churn double precision, "
    "segment text, computed_at timestamptz)"
)


def make_table(n: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "user_id": pa.array(np.arange(n, dtype=np.int64)),
            "score": pa.array(rng.random(n)),
            "churn": pa.array(rng.random(n)),
            "segment": pa.array(
                np.array(["alpha", "beta", "gamma", "delta", "epsilon"])[rng.integers(0, 5, n)]
            ),
            "computed_at": pa.array(
                np.full(n, np.datetime64("2024-05-01T06:00:00", "us")), pa.timestamp("us", "UTC")
            ),
        }
    )


def change(table: pa.Table, fraction: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    score = table.column("score").to_numpy().copy()
    idx = rng.choice(table.num_rows, int(table.num_rows * fraction), replace=False)
    score[idx] += 1.0
    return table.set_column(1, "score", pa.array(score))


def copy_csv(cur: psycopg.Cursor, table: str, data: pa.Table) -> None:
    """psycopg COPY of Arrow-written CSV (zoned timestamps as UTC wall-clock; session in UTC)."""
    stmt = psycopg.sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(psycopg.sql.Identifier(table))
    data = pa.table(
        [c.cast(pa.timestamp("us")) if pa.types.is_timestamp(c.type) else c for c in data.columns],
        names=data.column_names,
    )
    with cur.copy(stmt) as copy:
        for batch in data.to_batches(max_chunksize=100_000):
            buf = io.BytesIO()
            pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False))
            copy.write(buf.getbuffer())


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=100_000)
    args = parser.parse_args()
    base = os.environ["COORD_TEST_POSTGRES_URL"]
    dbname = f"coord_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    url = base.rsplit("/", 1)[0] + "/" + dbname
    work = Path(tempfile.mkdtemp(prefix="coord-bench-"))
    n, data = args.rows, make_table(args.rows)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET TimeZone = 'UTC'")  # as the push's own transactions do

            def fresh(name: str) -> None:
                conn.execute(f"DROP TABLE IF EXISTS {name}")
                conn.execute(DDL.format(t=name))

            def adbc_copy() -> float:
                import adbc_driver_postgresql.dbapi as adbc

                fresh("copy_adbc")
                with adbc.connect(url) as a, a.cursor() as cur:
                    t = timed(lambda: (cur.adbc_ingest("copy_adbc", data, mode="append"), a.commit()))
                return t

            def csv_copy() -> float:
                fresh("copy_csv")
                with conn.cursor() as cur:
                    return timed(lambda: copy_csv(cur, "copy_csv", data))

            dest = DestinationSettings(url=url, table="user_scores")
            fresh("warm_up")  # imports and first connections outside the timings
            push(
                data.slice(0, 1000),
                DestinationSettings(url=url, table="warm_up"),
                job="warm",
                key=["user_id"],
                state_dir=work / "warm",
            )
            push_s, staged_s, repush_s, adbc_s, csv_s = [], [], [], [], []
            for i in range(args.repeats):  # interleaved, so COPY and push see the same machine load
                adbc_s.append(adbc_copy())
                csv_s.append(csv_copy())
                fresh("user_scores")
                state = work / f"state{i}"
                push_s.append(
                    timed(lambda s=state: push(data, dest, job="bench", key=["user_id"], state_dir=s))
                )
                changed = change(data, 0.01, seed=i)
                t0 = time.perf_counter()
                r = push(changed, dest, job="bench", key=["user_id"], state_dir=state)
                repush_s.append(time.perf_counter() - t0)
                assert (r.updated, r.full) == (n // 100, False), r
                shutil.rmtree(state)  # no state: a full push through the stage, 1 % of rows differ
                t0 = time.perf_counter()
                r = push(data, dest, job="bench", key=["user_id"], state_dir=state)
                staged_s.append(time.perf_counter() - t0)
                assert (r.updated, r.unchanged, r.full) == (n // 100, n - n // 100, True), r
                print(
                    f"run {i}: ADBC COPY {adbc_s[-1]:.2f} s, CSV COPY {csv_s[-1]:.2f} s, "
                    f"full push {push_s[-1]:.2f} s, 1 % re-push {repush_s[-1]:.2f} s, "
                    f"staged full push {staged_s[-1]:.2f} s"
                )

            copy_s = min(statistics.median(adbc_s), statistics.median(csv_s))
            print(
                f"plain COPY, {n:,} rows: ADBC adbc_ingest {n / statistics.median(adbc_s):,.0f} rows/s, "
                f"psycopg CSV COPY {n / statistics.median(csv_s):,.0f} rows/s"
            )

            sample = data.slice(0, min(args.sample, n)).to_pandas()
            import sqlalchemy as sa

            engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
            to_sql_s = []
            for _ in range(2):
                fresh("to_sql")
                to_sql_s.append(
                    timed(lambda: sample.to_sql("to_sql", engine, if_exists="append", index=False))
                )
            engine.dispose()
            to_sql_rate = len(sample) / statistics.median(to_sql_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    copy_rate, push_rate = n / copy_s, n / statistics.median(push_s)
    staged_rate, repush = n / statistics.median(staged_s), statistics.median(repush_s)
    print(
        f"copy {copy_rate:,.0f} rows/s; push {push_rate:,.0f} rows/s ({push_rate / copy_rate:.2f} × COPY, "
        f"{push_rate / to_sql_rate:.1f} × to_sql); staged full push {staged_rate:,.0f} rows/s "
        f"({staged_rate / copy_rate:.2f} × COPY); to_sql {to_sql_rate:,.0f} rows/s "
        f"(sample of {len(sample):,}); 1 % re-push {repush:.2f} s"
    )
    print(
        json.dumps(
            {
                "rows": n,
                "copy_rows_per_s": round(copy_rate),
                "push_rows_per_s": round(push_rate),
                "push_staged_rows_per_s": round(staged_rate),
                "to_sql_rows_per_s": round(to_sql_rate),
                "repush_1pct_s": round(repush, 3),
                "push_vs_copy": round(push_rate / copy_rate, 3),
                "push_vs_to_sql": round(push_rate / to_sql_rate, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
