"""The example pipeline loads, and its jobs form the journey: EL tables → features → scores → push."""

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
        ("user_features", "spark", ["fivetran.app.users", "fivetran.app.events"],
         ["reporting.user_features"]),
        ("churn_scores", "score", ["reporting.user_features"], ["scores.churn"]),
        ("push_user_scores", "reverse_etl", ["scores.churn"], ["product.user_scores"]),
    ]
    assert all(spec.job_partitioning(name) == "daily" for name in spec.jobs)
    push = spec.jobs["push_user_scores"].settings
    assert push["destination"]["url"] == settings.resolved_product_db_url()
    assert spec.jobs["user_features"].settings["output"].startswith(str(options.lake))
