"""The example churn model: will a website user stop coming back within 30 days?

The data is synthetic but shaped like a reporting table of user features (one row per user):
engagement drives sessions, sessions drive purchases and recency, paid plans and long tenure
retain, support tickets push away. The label is drawn from a logistic function of those
features plus noise, so a model has something real to learn and its AUC is meaningful.

    python -m models.churn --tracking-uri sqlite:///mlflow.db          # train, register, set champion
    python -m models.churn --tracking-uri ... --seed 8 --no-alias      # a challenger version
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import pyarrow as pa

from models import registry

MODEL_NAME = "churn"
ALIAS = "champion"
EXPERIMENT = "models.churn"
KEY = "user_id"
CATEGORICAL = ("country", "plan")
NUMERIC = ("sessions_7d", "purchases_30d", "days_since_last_visit", "tenure_days",
           "avg_session_minutes", "support_tickets_90d")
FEATURES = CATEGORICAL + NUMERIC
LABEL = "churned"
OUTPUTS = ("p_stay", "p_churn")          # predict_proba's columns, in class order 0, 1
# Types inside the fitted pipeline that skops does not trust by default; the pipeline is built
# here, so loading them is safe (the tree predictor's node indices come from our own fit).
TRUSTED_TYPES = ("functools.partial", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                 "sklearn.utils.validation.check_array")

COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "ES", "CA", "AU", "JP")
COUNTRY_SHARE = (0.30, 0.10, 0.10, 0.08, 0.09, 0.12, 0.05, 0.06, 0.04, 0.06)
COUNTRY_EFFECT = (0.0, -0.1, -0.15, 0.05, 0.35, 0.45, 0.1, -0.05, -0.1, -0.2)
PLANS = ("free", "basic", "premium")
PLAN_SHARE = (0.62, 0.28, 0.10)
PLAN_ENGAGEMENT = np.array([1.0, 1.4, 1.9])
PLAN_EFFECT = np.array([0.55, 0.0, -0.7])


def generate_users(rows: int, seed: int = 7, first_user_id: int = 1) -> pd.DataFrame:
    """`rows` users with their features and the `churned` label, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    country_idx = rng.choice(len(COUNTRIES), size=rows, p=COUNTRY_SHARE)
    plan_idx = rng.choice(len(PLANS), size=rows, p=PLAN_SHARE)
    tenure = np.clip(rng.gamma(1.3, 260.0, rows), 1, 3650).astype(np.int64)
    engagement = rng.lognormal(0.0, 0.6, rows) * PLAN_ENGAGEMENT[plan_idx]
    sessions = rng.poisson(3.0 * engagement)
    away = 7 + rng.geometric(0.08, rows)
    recency = np.where(sessions > 0, rng.integers(0, 7, rows), np.minimum(away, 365)).astype(np.int64)
    purchases = rng.poisson(0.25 * sessions * (1 + plan_idx))
    minutes = np.round(rng.lognormal(1.6 + 0.15 * np.log1p(sessions), 0.5), 2)
    tickets = rng.poisson(0.3 + 0.4 * (plan_idx > 0))

    logit = (-0.3 + 0.06 * np.minimum(recency, 60) - 0.35 * np.sqrt(sessions) - 0.45 * np.sqrt(purchases)
             - 0.0012 * np.minimum(tenure, 1500) + 0.3 * tickets + PLAN_EFFECT[plan_idx]
             + np.asarray(COUNTRY_EFFECT)[country_idx] + rng.normal(0.0, 0.5, rows))
    churned = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))

    return pd.DataFrame({
        KEY: np.arange(first_user_id, first_user_id + rows, dtype=np.int64),
        "country": np.asarray(COUNTRIES, dtype=object)[country_idx],
        "plan": np.asarray(PLANS, dtype=object)[plan_idx],
        "sessions_7d": sessions.astype(np.int64),
        "purchases_30d": purchases.astype(np.int64),
        "days_since_last_visit": recency,
        "tenure_days": tenure,
        "avg_session_minutes": minutes.astype(np.float64),
        "support_tickets_90d": tickets.astype(np.int64),
        LABEL: churned.astype(np.int64),
    })


def generate_features(rows: int, seed: int = 7, first_user_id: int = 1) -> pa.Table:
    """The reporting table a scoring job reads: the key and the features, no label."""
    frame = generate_users(rows, seed, first_user_id).drop(columns=[LABEL])
    return pa.Table.from_pandas(frame, preserve_index=False)


def build_pipeline(seed: int = 7, max_iter: int = 100):
    """Ordinal-encode the categoricals (unknown → missing) and fit gradient-boosted trees.

    Trees suit the data (thresholds on recency, plan interactions) and predict fast enough for
    scoring millions of rows on one machine.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encode = ColumnTransformer(
        [("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                        encoded_missing_value=-1), list(CATEGORICAL)),
         ("numeric", "passthrough", list(NUMERIC))],
        verbose_feature_names_out=False,
    )
    # Negative codes (unknown or missing categories) are treated as missing by the trees.
    trees = HistGradientBoostingClassifier(
        max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=31, early_stopping=False,
        categorical_features=list(range(len(CATEGORICAL))), random_state=seed,
    )
    return Pipeline([("encode", encode), ("trees", trees)])


def train(rows: int = 20_000, seed: int = 7, max_iter: int = 100):
    """Fit on synthetic users; returns (pipeline, holdout AUC, training frame)."""
    from sklearn.metrics import roc_auc_score

    users = generate_users(rows, seed)
    cut = int(rows * 0.8)
    train_part, holdout = users.iloc[:cut], users.iloc[cut:]
    pipeline = build_pipeline(seed, max_iter).fit(train_part[list(FEATURES)], train_part[LABEL])
    auc = float(roc_auc_score(holdout[LABEL], pipeline.predict_proba(holdout[list(FEATURES)])[:, 1]))
    return pipeline, auc, users


def train_and_register(tracking_uri: str, *, rows: int = 20_000, seed: int = 7, max_iter: int = 100,
                       model_name: str = MODEL_NAME, alias: str | None = ALIAS) -> str:
    """Train, log with signature and input example, register; point `alias` at it. Returns the version."""
    pipeline, auc, users = train(rows, seed, max_iter)
    version = registry.log_and_register(
        pipeline,
        tracking_uri=tracking_uri,
        experiment=EXPERIMENT,
        model_name=model_name,
        example=users[list(FEATURES)].head(5),
        output_names=OUTPUTS,
        predict_fn="predict_proba",
        params={"rows": rows, "seed": seed, "max_iter": max_iter},
        metrics={"holdout_auc": auc, "churn_rate": float(users[LABEL].mean())},
        trusted_types=TRUSTED_TYPES,
    )
    if alias:
        registry.set_alias(tracking_uri, model_name, alias, version)
    return version


def ensure_champion(tracking_uri: str, *, model_name: str = MODEL_NAME, alias: str = ALIAS,
                    rows: int = 20_000, seed: int = 7, max_iter: int = 100) -> str:
    """The version `alias` points at; trains and registers a first version when there is none."""
    existing = registry.alias_version(tracking_uri, model_name, alias)
    if existing is not None:
        return existing
    return train_and_register(tracking_uri, rows=rows, seed=seed, max_iter=max_iter,
                              model_name=model_name, alias=alias)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.churn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking and registry URI")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-iter", type=int, default=100, help="boosting rounds")
    parser.add_argument("--name", default=MODEL_NAME, help="registered model name")
    parser.add_argument("--alias", default=ALIAS)
    parser.add_argument("--no-alias", action="store_true", help="register without moving the alias")
    args = parser.parse_args(argv)
    version = train_and_register(args.tracking_uri, rows=args.rows, seed=args.seed, max_iter=args.max_iter,
                                 model_name=args.name, alias=None if args.no_alias else args.alias)
    print(f"registered {args.name} version {version}" + ("" if args.no_alias else f" as @{args.alias}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
