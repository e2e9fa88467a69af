"""The example pipeline loads, and its jobs form the journey: the app's export (on the schedule's
tick) → dlt → dbt → Spark → the model's scores → the push."""

from __future__ import annotations

from coordinator.demo.journey import spec_env
from coordinator.demo.settings import DemoOptions, demo_settings, example_dir
from coordinator.spec import load_spec


def test_the_example_spec_is_the_website_scores_journey(tmp_path) -> None:
    options = DemoOptions(home=tmp_path)
    settings = demo_settings(options)
    spec = load_spec(example_dir() / "pipeline.yaml", env=spec_env(options, settings))
    chain = [(name, job.kind, [i.dataset for i in job.inputs], list(job.outputs))
             for name, job in spec.jobs.items()]
    assert chain == [
        ("load_app", "el", ["schedule.daily_0600", "app.export"], ["raw.users", "raw.events"]),
        ("reporting", "dbt", ["raw.users", "raw.events"], ["reporting.users", "reporting.events"]),
        ("user_features", "spark", ["reporting.users", "reporting.events"], ["reporting.user_features"]),
        ("churn_scores", "score", ["reporting.user_features", "mlflow.models.churn"], ["scores.churn"]),
        ("push_user_scores", "reverse_etl", ["scores.churn"], ["product.user_scores"]),
    ]
    assert all(spec.job_partitioning(name) == "daily" for name in spec.jobs)
    # DuckDB allows one writer per file: the load and the build never run beside each other
    assert spec.jobs["load_app"].pool == spec.jobs["reporting"].pool == "warehouse"
    assert spec.pools["warehouse"] == 1
    assert spec.schedules["daily_0600"].partition == "-1d"
    # the scores wait for the model's champion to be announced, and re-run when it moves
    [_, registry] = spec.jobs["churn_scores"].inputs
    assert (registry.mapping, registry.on_change) == ("latest", "rerun_latest")
    el = spec.jobs["load_app"].settings
    assert el["destination"]["path"] == f"{options.lake}/warehouse.duckdb"
    assert el["args"]["export_dir"] == str(options.app_export)
    assert spec.jobs["reporting"].settings["vars"] == {"lake": str(options.lake)}
    push = spec.jobs["push_user_scores"].settings
    assert push["destination"]["url"] == settings.resolved_product_db_url()
    assert spec.jobs["user_features"].settings["output"].startswith(str(options.lake))
