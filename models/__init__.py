"""Example models: code that trains them on synthetic data and registers them in MLflow.

Each module is runnable (`python -m models.churn --tracking-uri ...`) and offers an
`ensure_champion(tracking_uri)` that the demo and the tests call: it registers a first version
and points the `champion` alias at it unless the alias already exists.
"""
