"""Run the "website scores" journey once: the app exports its days, the exports and the days'
schedule ticks are announced, the model is made sure of beside the first steps, the coordinator
runs in bounded mode until the journey is idle — load (dlt), reporting tables (dbt), features
(Spark), scores (MLflow), push — and what happened is summarized.

Order matters for a clean first run on a fresh machine: the events are published before the
coordinator runs until idle (so it has work from the start), and the score job waits for the
model's announcement (`mlflow.models.churn`), which comes once the model is trained and
registered — beside the first steps, which do not need it (demo/model.py).
The service fires no schedule on the clock: the demo's ticks are those of the days it exports.
Everything is built here and passed down; nothing is global.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack, nullcontext

from rich.console import Console

from coordinator.bus.factory import topic_specs
from coordinator.demo import landing, results
from coordinator.demo.model import ModelInBackground
from coordinator.demo.progress import LiveProgress
from coordinator.demo.runs import journey_runs
from coordinator.demo.settings import DemoOptions, demo_settings
from coordinator.demo.summary import DemoSummary, RunSummary
from coordinator.publish import Publisher
from coordinator.service import Service
from coordinator.settings import Settings
from coordinator.spec import PipelineSpec, load_spec
from coordinator.store.store import StateStore


def spec_env(options: DemoOptions, settings: Settings) -> dict[str, str]:
    """What the example spec interpolates: the lake and the app's export under the demo's home,
    the product database."""
    return {
        **os.environ,
        "LAKE": str(options.lake),
        "APP_EXPORT": str(options.app_export),
        "COORD_PRODUCT_DB_URL": settings.resolved_product_db_url(),
    }


def load_example(options: DemoOptions, settings: Settings) -> PipelineSpec:
    return load_spec(options.spec_path, env=spec_env(options, settings))


def run_demo(
    options: DemoOptions, console: Console, live: bool = True, settings: Settings | None = None
) -> DemoSummary:
    started = time.time()
    settings = settings or demo_settings(options)
    settings.home.mkdir(parents=True, exist_ok=True)
    spec = load_example(options, settings)
    days = landing.days_ending(options.end_day, options.days)
    partitions = [d.isoformat() for d in days]
    jobs = list(spec.jobs)
    push_job, _, _ = results.push_target(spec)

    with console.status("the app exports its days (users, events)"):
        exported = landing.export(options.app_export, days, options.users, options.seed)
    console.print(f"the app exported {partitions[0]} … {partitions[-1]} under {options.app_export}")

    counter = results.PushCounter([push_job])
    service = Service(spec, settings, hooks=[counter], log_runs=False, fire_schedules=False)
    with service, ExitStack() as stack:
        service.bus.ensure_topics(topic_specs(settings))
        coordinator = service.coordinator
        ticks = landing.ticks(spec, days)
        with Publisher(service.bus, settings) as publisher:
            sent = landing.publish_all(publisher, [e.event() for e in exported] + ticks)
        console.print(f"published {sent} events: the days' exports (producer {landing.PRODUCER!r}) and ticks")
        model = ModelInBackground(settings, service.bus).start()  # the score job waits for it

        watcher = stack.enter_context(StateStore(settings.resolved_state_url()))
        kinds = {name: job.kind for name, job in spec.jobs.items()}

        def read() -> list[RunSummary]:
            return journey_runs(watcher, kinds, partitions)

        progress = LiveProgress(read, jobs, console, status=lambda: f"{time.time() - started:.0f} s")
        with progress if live else nullcontext():
            stats = coordinator.run(until_idle=True, timeout_s=options.timeout_s)
            # idle before the model was announced (it took longer than the steps before the
            # scores): go on once it is, so the scores and the push run too
            version = model.wait()
            left = max(options.timeout_s - (time.time() - started), 1.0)
            stats.add(coordinator.run(until_idle=True, timeout_s=left))
        runs = read()
    console.print(f"model churn@champion is version {version} ({settings.resolved_mlflow_uri()})")

    return results.build_summary(options, settings, spec, runs, started, stats.launched, counter.rows)
