"""Realistic raw EL tables for the example pipeline, written with pyarrow (no Spark needed).

`write_raw_day(root, date, n_users, seed)` lands what an EL tool would for one day (`write_day`
writes the same tables without the raw/ level, as the app's daily export):
- raw/users/date=D   a snapshot of the users table (user_id, email, country, plan, signup_date, updated_at)
- raw/events/date=D  that day's product events (event_id, user_id, event_type, event_time, session_id, amount)
`write_hourly_counts(root, date, n_users, seed)` lands 24 hourly partitions of event counts,
raw/events_hourly/date=D/hour=HH (user_id, event_type, events), for the hourly-to-daily job.

Everything is a pure function of (seed, user, day): a user keeps their country, plan and
signup date across days, and writing a day twice gives the same files (the folder is replaced).
Each user has an activity level; a share of users is drifting away (fewer sessions each day),
which is what a churn model learns from the features built on top.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# The same countries, plans and shares as the example churn model's training data (models/churn.py).
COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN", "ES", "CA", "AU", "JP"])
COUNTRY_WEIGHTS = np.array([0.30, 0.10, 0.10, 0.08, 0.09, 0.12, 0.05, 0.06, 0.04, 0.06])
PLANS = np.array(["free", "basic", "premium"])
PLAN_WEIGHTS = np.array([0.62, 0.28, 0.10])
TICKETS_PER_DAY = np.array([0.3, 0.7, 0.7]) / 90    # support tickets per user and day, by plan
FIRST_SIGNUP = date(2024, 1, 1)
EVENT_TYPES = ("session_start", "page_view", "add_to_cart", "purchase", "support_ticket")


def _as_date(d: date | str) -> date:
    return d if isinstance(d, date) else date.fromisoformat(d)


def _users(n_users: int, seed: int) -> dict[str, np.ndarray]:
    """Per-user traits that never change with the day (seeded by `seed` only)."""
    rng = np.random.default_rng([seed, 0])
    return {
        "user_id": np.arange(1, n_users + 1, dtype=np.int64),
        "country": rng.choice(COUNTRIES, n_users, p=COUNTRY_WEIGHTS),
        "plan_idx": (plan_idx := rng.choice(len(PLANS), n_users, p=PLAN_WEIGHTS)),
        "plan": PLANS[plan_idx],
        "signup_offset": rng.integers(0, 700, n_users),
        # mean sessions per day when engaged; paid plans are used more
        "activity": rng.gamma(2.0, 0.5, n_users) * np.array([1.0, 1.4, 1.9])[plan_idx],
        "drifting": rng.random(n_users) < 0.25,             # users slowly churning
    }


def _replace_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def users_table(day: date | str, n_users: int, seed: int = 7) -> pa.Table:
    day = _as_date(day)
    u = _users(n_users, seed)
    signup = np.array([min(FIRST_SIGNUP + timedelta(days=int(o)), day) for o in u["signup_offset"]])
    updated = datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)
    return pa.table({
        "user_id": pa.array(u["user_id"]),
        "email": pa.array([f"user{i}@example.com" for i in u["user_id"]]),
        "country": pa.array(u["country"].tolist()),
        "plan": pa.array(u["plan"].tolist()),
        "signup_date": pa.array(signup.tolist(), pa.date32()),
        "updated_at": pa.array([updated] * n_users, pa.timestamp("us", tz="UTC")),
    })


def events_table(day: date | str, n_users: int, seed: int = 7) -> pa.Table:
    """One day of events: sessions per user ~ Poisson(activity), fading for drifting users."""
    day = _as_date(day)
    u = _users(n_users, seed)
    rng = np.random.default_rng([seed, day.toordinal()])
    age = np.array([(day - FIRST_SIGNUP).days - int(o) for o in u["signup_offset"]])
    fade = np.where(u["drifting"], np.exp(-np.clip(age, 0, None) / 120.0), 1.0)
    sessions = rng.poisson(u["activity"] * fade)
    sessions[age < 0] = 0                                   # not signed up yet
    user_ids, types, times, session_ids, amounts = [], [], [], [], []
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for uid, n in zip(u["user_id"], sessions, strict=True):
        for s in range(int(n)):
            start = midnight + timedelta(seconds=int(rng.integers(0, 86_000)))
            sid = f"{day.isoformat()}-{uid}-{s}"
            kinds = ["session_start"] + ["page_view"] * (1 + int(rng.poisson(3)))
            if rng.random() < 0.2:
                kinds.append("add_to_cart")
                if rng.random() < 0.4:
                    kinds.append("purchase")
            at = start
            for kind in kinds:
                user_ids.append(int(uid))
                types.append(kind)
                times.append(at)
                session_ids.append(sid)
                amounts.append(round(float(rng.lognormal(3.2, 0.6)), 2) if kind == "purchase" else None)
                at += timedelta(seconds=5 + int(rng.exponential(75)))
    tickets = rng.random(len(u["user_id"])) < TICKETS_PER_DAY[u["plan_idx"]]
    for uid in u["user_id"][tickets & (age >= 0)]:
        user_ids.append(int(uid))
        types.append("support_ticket")
        times.append(midnight + timedelta(seconds=int(rng.integers(0, 86_000))))
        session_ids.append(f"{day.isoformat()}-{uid}-ticket")
        amounts.append(None)
    return pa.table({
        "event_id": pa.array([f"{sid}-{i}" for i, sid in enumerate(session_ids)]),
        "user_id": pa.array(user_ids, pa.int64()),
        "event_type": pa.array(types, pa.string()),
        "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "session_id": pa.array(session_ids, pa.string()),
        "amount": pa.array(amounts, pa.float64()),
    })


def write_raw_day(root: str | Path, day: date | str, n_users: int = 200, seed: int = 7) -> dict[str, Path]:
    """Write raw/users/date=D and raw/events/date=D under `root`; returns {"users": path, "events": path}."""
    return write_day(Path(root) / "raw", day, n_users, seed)


def write_day(folder: str | Path, day: date | str, n_users: int = 200, seed: int = 7) -> dict[str, Path]:
    """Write users/date=D and events/date=D under `folder` (the app's export of a day, as the
    example journey's EL step reads it); returns {"users": path, "events": path}."""
    day, folder = _as_date(day), Path(folder)
    out = {}
    tables = {"users": users_table(day, n_users, seed), "events": events_table(day, n_users, seed)}
    for name, table in tables.items():
        part = _replace_dir(folder / name / f"date={day.isoformat()}")
        pq.write_table(table, part / "part-00000.parquet")
        out[name] = part
    return out


def write_hourly_counts(root: str | Path, day: date | str, n_users: int = 50,
                        seed: int = 7) -> dict[str, Path]:
    """Write the day's events as 24 hourly count partitions; returns {"YYYY-MM-DDTHH": path}."""
    day, root = _as_date(day), Path(root)
    events = events_table(day, n_users, seed).to_pandas()
    events["hour"] = events["event_time"].dt.hour
    out = {}
    for hour in range(24):
        counts = (events[events["hour"] == hour].groupby(["user_id", "event_type"]).size()
                  .reset_index(name="events"))
        table = pa.table({"user_id": pa.array(counts["user_id"], pa.int64()),
                          "event_type": pa.array(counts["event_type"], pa.string()),
                          "events": pa.array(counts["events"], pa.int64())})
        folder = _replace_dir(root / "raw" / "events_hourly" / f"date={day.isoformat()}" / f"hour={hour:02d}")
        pq.write_table(table, folder / "part-00000.parquet")
        out[f"{day.isoformat()}T{hour:02d}"] = folder
    return out
