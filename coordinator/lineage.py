"""OpenLineage run events (START, COMPLETE, FAIL) for every attempt, to a lineage service.

Each attempt of a run is one OpenLineage run: its id is a UUID derived from (run id, attempt),
so a coordinator that re-attaches after a restart reports the same run. Inputs are the exact
versions the run consumed — the `version` dataset facet carries the completion event id — with
their schema when known; outputs carry the id of the completion event the coordinator publishes
for them and the row count the job reported; a score run's COMPLETE or FAIL event names the
model version it used (the `coordinator_model` run facet, coordinator/scoring/lineage_facet.py).
The job's namespace is settings.lineage_namespace, its name the job's name; a daily or hourly
partition is the run's nominal time.

Events are built with the openlineage-python client's models and sent by its HTTP transport
from a background thread, so a slow or absent lineage service never holds up the engine; a
send that fails is logged and dropped (lineage is an observer, not part of the contract).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    schema_dataset,
)
from openlineage.client.transport.http import HttpConfig, HttpTransport

from coordinator import __version__
from coordinator.hooks import Hook
from coordinator.launchers.base import RunResult
from coordinator.scoring.lineage_facet import FACET_NAME as MODEL_FACET
from coordinator.scoring.lineage_facet import model_facet
from coordinator.secrets import Masker, reveal
from coordinator.settings import Settings
from coordinator.spec import partitions as P
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import RunRow

log = logging.getLogger(__name__)

PRODUCER = f"urn:coordinator:{__version__}"


def openlineage_run_id(run_id: str, attempt: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coordinator:{run_id}:{attempt}"))


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Lineage(Hook):
    """The hook. `emit` is injectable (tests, other transports); by default the HTTP transport
    posts to settings.lineage_url (its path, if any, is the endpoint)."""

    def __init__(
        self, settings: Settings, spec: PipelineSpec, emit: Callable[[RunEvent], Any] | None = None
    ) -> None:
        self.settings, self.spec = settings, spec
        self.namespace = settings.lineage_namespace
        self.masker = Masker.of(settings, spec)  # an error message may quote a secret
        if emit is None:
            emit = self._client(settings).emit
        self._emit = emit
        self._queue: queue.Queue[RunEvent | None] = queue.Queue()
        self._thread = threading.Thread(target=self._send_loop, name="coord-lineage", daemon=True)
        self._thread.start()

    @staticmethod
    def _client(settings: Settings) -> OpenLineageClient:
        url = reveal(settings.lineage_url)
        if not url:
            raise ValueError("settings.lineage_url is not set")
        base, _, path = url.partition("://")
        host, _, endpoint = path.partition("/")
        config = HttpConfig(url=f"{base}://{host}", endpoint=endpoint or "api/v1/lineage", timeout=5.0)
        return OpenLineageClient(transport=HttpTransport(config))

    # ------------------------------------------------------------------ sending
    def _send_loop(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._emit(event)
            except Exception:
                log.exception("lineage: sending a %s event failed", getattr(event, "eventType", "?"))
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every event queued so far was sent (or failed)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    # ------------------------------------------------------------------ hooks
    def before_launch(self, run: RunRow) -> None:
        self._queue.put(self.event(run, RunState.START))

    def after_finish(self, run: RunRow, result: RunResult) -> None:
        state = RunState.COMPLETE if result.succeeded else RunState.FAIL
        self._queue.put(self.event(run, state, result))

    # ------------------------------------------------------------------ events
    def event(self, run: RunRow, state: RunState, result: RunResult | None = None) -> RunEvent:
        from coordinator.engine import output_event_id

        run_facets: dict[str, Any] = {}
        nominal = self._nominal(run)
        if nominal:
            run_facets["nominalTime"] = nominal
        model = model_facet(result.details, PRODUCER) if result is not None else None
        if model is not None:  # a score run: the exact model version it used
            run_facets[MODEL_FACET] = model
        if result is not None and not result.succeeded:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=(self.masker.text(result.error) or "failed")[:10000], programmingLanguage="shell"
            )
        job = self.spec.jobs.get(run.job)
        job_facets = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="COORDINATOR", jobType=job.kind.upper() if job else "JOB"
            )
        }
        reports = {o.dataset: o for o in (result.outputs if result else ())}
        outputs = []
        for ds in job.outputs if job else ():
            facets: dict[str, Any] = {}
            output_facets: dict[str, Any] = {}
            if result is not None and result.succeeded:
                facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                    datasetVersion=output_event_id(run.run_id, run.attempt, ds, "succeeded")
                )
                report = reports.get(ds)
                if report is not None and report.columns:
                    facets["schema"] = _schema(report.columns)
                if report is not None and report.row_count is not None:
                    output_facets["outputStatistics"] = (
                        output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                            rowCount=report.row_count
                        )
                    )
            outputs.append(
                OutputDataset(namespace=self.namespace, name=ds, facets=facets, outputFacets=output_facets)
            )
        inputs = []
        for v in run.inputs:
            version = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=v.event_id)
            facets = {"version": version}
            if v.columns:
                facets["schema"] = _schema(v.columns)
            inputs.append(InputDataset(namespace=self.namespace, name=v.dataset, facets=facets))
        return RunEvent(
            eventType=state,
            eventTime=_now(),
            producer=PRODUCER,
            run=Run(runId=openlineage_run_id(run.run_id, run.attempt), facets=run_facets),
            job=Job(namespace=self.namespace, name=run.job, facets=job_facets),
            inputs=inputs,
            outputs=outputs,
        )

    def _nominal(self, run: RunRow) -> nominal_time_run.NominalTimeRunFacet | None:
        if run.partition is None or run.job not in self.spec.jobs:
            return None
        partitioning = self.spec.job_partitioning(run.job)
        if partitioning == "daily":
            start, step = datetime.strptime(run.partition, P.DAILY_FORMAT), timedelta(days=1)
        elif partitioning == "hourly":
            start, step = datetime.strptime(run.partition, P.HOURLY_FORMAT), timedelta(hours=1)
        else:
            return None
        start = start.replace(tzinfo=UTC)
        return nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=start.isoformat(), nominalEndTime=(start + step).isoformat()
        )


def _schema(columns: Any) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=c.name, type=str(c.type)) for c in columns]
    )
