"""The user-features definitions again, in pandas: what jobs/user_features.py must compute."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd


def expected_features(users: pd.DataFrame, events: pd.DataFrame, day: date,
                      lookback: int = 90) -> pd.DataFrame:
    ev = events.assign(event_day=events.event_time.dt.date)
    ev = ev[(ev.event_day <= day) & (ev.event_day > day - timedelta(days=lookback))]
    ev = ev.assign(age=[(day - d).days for d in ev.event_day])
    rows = []
    for u in users.itertuples():
        e = ev[ev.user_id == u.user_id]
        tenure = max((day - u.signup_date).days, 0)
        kind = e.event_type
        visits = e[kind != "support_ticket"]
        in30 = e[(e.age < 30) & e.session_id.notna() & (kind != "support_ticket")]
        spans = in30.groupby("session_id").event_time.agg(["min", "max"])
        minutes = (spans["max"] - spans["min"]).dt.total_seconds() / 60 if len(spans) else pd.Series([])
        purchases = e[(kind == "purchase") & (e.age < 30)]
        rows.append({
            "user_id": u.user_id, "feature_date": day, "country": u.country, "plan": u.plan,
            "tenure_days": tenure,
            "days_since_last_visit": ((day - visits.event_day.max()).days if len(visits)
                                      else min(tenure, lookback)),
            "sessions_7d": int(((kind == "session_start") & (e.age < 7)).sum()),
            "sessions_30d": int(((kind == "session_start") & (e.age < 30)).sum()),
            "page_views_7d": int(((kind == "page_view") & (e.age < 7)).sum()),
            "purchases_30d": len(purchases),
            "revenue_30d": float(purchases.amount.sum()),
            "avg_session_minutes": float(minutes.mean()) if len(minutes) else 0.0,
            "support_tickets_90d": int((kind == "support_ticket").sum()),
        })
    return pd.DataFrame(rows).set_index("user_id")
