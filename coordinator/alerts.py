"""Alerts: one Slack-compatible message per incident, to every configured webhook, exactly once.

Found by the watcher's tick (coordinator/watch.py) in the store and on the clock, so nothing
is lost in a crash; the engine hooks only wake the watcher early.

Incidents, and the key that makes each one alert once:
    run failed (its last attempt)    run-failed:<run id>       a failure after a retry is the same one
    run blocked (contract)           run-blocked:<run id>
    bus message dead-lettered        dead-letter:<topic>:<reason>:<hour>   a burst is one incident
    partition waiting past deadline  deadline:<job>:<partition>

An incident is first written to `coord_alerts` in the state store (one row per webhook, unique
by incident and URL), and only then posted; a row is marked sent when the webhook answered 2xx
and re-posted with backoff otherwise. So a repeated failure, a second coordinator instance or
a restart finds the row and says nothing twice. The message is Slack's incoming-webhook shape
(`text` + `attachments[].fields`) with the same facts as top-level keys for other receivers:
incident, kind, job, partition, run_id, error, root_cause, missing, link.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from coordinator import history, readiness
from coordinator.hooks import Hook
from coordinator.operations import missing_inputs
from coordinator.secrets import Masker, reveal
from coordinator.settings import Settings
from coordinator.spec import partitions as P
from coordinator.spec.models import PipelineSpec
from coordinator.store.deadletters import DeadLetterRow
from coordinator.store.store import RunRow, StateStore, Tx

log = logging.getLogger(__name__)

LOOKBACK_S = 2 * 86400  # deadlines missed longer ago than this are history, not news
MAX_BACKOFF_S = 600.0


def deadline_at(partitioning: P.Partitioning, key: str, deadline: str) -> float | None:
    """When (job partition `key`, deadline "HH:MM" after the partition ends) is due; None if the
    partitioning has no time (static or unpartitioned)."""
    hours, minutes = (int(x) for x in deadline.split(":"))
    if partitioning == "daily":
        end = datetime.strptime(key, P.DAILY_FORMAT).replace(tzinfo=UTC) + timedelta(days=1)
    elif partitioning == "hourly":
        end = datetime.strptime(key, P.HOURLY_FORMAT).replace(tzinfo=UTC) + timedelta(hours=1)
    else:
        return None
    return (end + timedelta(hours=hours, minutes=minutes)).timestamp()


def latest_due(partitioning: P.Partitioning, deadline: str, now: float) -> str | None:
    """The newest partition whose deadline has passed at `now`."""
    hours, minutes = (int(x) for x in deadline.split(":"))
    t = datetime.fromtimestamp(now, UTC) - timedelta(hours=hours, minutes=minutes)
    if partitioning == "daily":
        return (t - timedelta(days=1)).strftime(P.DAILY_FORMAT)
    if partitioning == "hourly":
        return (t - timedelta(hours=1)).strftime(P.HOURLY_FORMAT)
    return None


class Alerts(Hook):
    """The alerting hook (engine) and watcher listener (dead letters, deadlines, re-delivery)."""

    def __init__(
        self,
        settings: Settings,
        spec: PipelineSpec,
        store: StateStore,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.spec, self.store, self.clock = settings, spec, store, clock
        self.urls = [reveal(url) or "" for url in settings.alert_webhooks]
        self.masker = Masker.of(settings, spec)  # payloads and log lines carry no secret
        self.client = client or httpx.Client(timeout=5.0)
        self._lock = threading.Lock()
        self.wake: Callable[[], None] | None = None  # set to the watcher's `wake` by whoever wires both
        with store.begin() as tx:
            tx.alerts_setup()

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ incidents
    def link(self, run_id: str | None = None) -> str:
        base = self.settings.resolved_public_url()
        return f"{base}/ui/runs/{run_id}" if run_id else f"{base}/ui"

    def raise_incident(self, incident: str, kind: str, text: str, facts: dict[str, Any]) -> bool:
        """Record the incident (once) and post it; False when it was known already."""
        if not self.urls:
            return False
        text, facts = self.masker.text(text) or "", self.masker.value(facts)
        body = _message(incident, kind, text, facts)
        now = self.clock()
        rows = [
            {
                "incident": incident,
                "url": url,
                "kind": kind,
                "body": json.dumps(body),
                "created_at": now,
                "sent_at": None,
                "attempts": 0,
                "next_at": now,
                "last_error": None,
            }
            for url in self.urls
        ]
        with self.store.begin() as tx:
            new = tx.alerts_add(rows)
        if new:
            log.warning("alert %s: %s", incident, text)
            self.deliver(incident)
        return bool(new)

    def deliver(self, incident: str | None = None) -> int:
        """Post the due, unsent alerts (of one incident, or all); returns how many were delivered.
        Called inline for a new incident (a short timeout), and by the watcher's tick for the rest."""
        sent = 0
        with self._lock:
            now = self.clock()
            with self.store.begin() as tx:
                due = tx.alerts_due(now, incident)
            for m in due:
                error = self._post(m["url"], m["body"])
                values: dict[str, Any] = {"attempts": m["attempts"] + 1}
                if error is None:
                    values["sent_at"] = self.clock()
                    sent += 1
                else:
                    values["last_error"] = error
                    values["next_at"] = self.clock() + min(MAX_BACKOFF_S, 5.0 * 2 ** m["attempts"])
                    log.warning(
                        "alert %s to %s not delivered: %s", m["incident"], self.masker.text(m["url"]), error
                    )
                with self.store.begin() as tx:
                    tx.alert_tried(m["incident"], m["url"], **values)
        return sent

    def _post(self, url: str, body: str) -> str | None:
        try:
            response = self.client.post(url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            return self.masker.text(f"{type(exc).__name__}: {exc}")  # it may quote the URL
        return None if response.is_success else f"HTTP {response.status_code}"

    # ------------------------------------------------------------------ engine hooks
    # The engine calls these inside its own transaction: they only wake the watcher, whose tick
    # finds the failed and blocked runs in the store (which is also what survives a crash).
    def after_failed(self, run: RunRow, error: str | None) -> None:
        if self.wake is not None:
            self.wake()

    def after_blocked(self, run: RunRow, reason: str) -> None:
        if self.wake is not None:
            self.wake()

    def check_runs(self, now: float) -> list[str]:
        """Raise an incident for each run that failed or was blocked (once per run)."""
        with self.store.begin() as tx:
            runs = tx.runs_ended(("failed", "blocked"), since=now - LOOKBACK_S)
            known = tx.alert_incidents(("run-failed", "run-blocked"))
            todo = []
            for run in runs:
                kind = "run-failed" if run.state == "failed" else "run-blocked"
                if f"{kind}:{run.run_id}" not in known:
                    todo.append((kind, run, history.root_cause(tx, self.spec, run.job, run.partition)))
        raised = []
        for kind, run, cause in todo:
            error = run.error or run.state
            where = f"{run.job}[{run.partition}]" if run.partition else run.job
            verb = "failed" if kind == "run-failed" else "is blocked"
            facts = {
                "job": run.job,
                "partition": run.partition,
                "run_id": run.run_id,
                "attempt": run.attempt,
                "error": error[:3000],
                "root_cause": _cause(cause) if cause else f"this run ({run.run_id})",
                "link": self.link(run.run_id),
            }
            if self.raise_incident(f"{kind}:{run.run_id}", kind, f"Run {where} {verb}: {error[:500]}", facts):
                raised.append(run.run_id)
        return raised

    # ------------------------------------------------------------------ watcher
    def dead_letter_unwritable(self, row: DeadLetterRow) -> None:
        hour = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H")
        facts = {
            "reason": row.reason,
            "error": row.error,
            "source_topic": row.topic,
            "source_partition": row.partition,
            "source_offset": row.offset,
            "size": row.size,
            "sha256": row.sha256,
            "link": self.link(),
        }
        self.raise_incident(
            f"dead-letter-unwritable:{row.topic}:{hour}",
            "dead-letter",
            f"A refused message on {row.topic} could not be written to the dead-letter topic ({row.error});"
            " it is kept in the state store (coord_dead_letters)",
            facts,
        )

    def dead_lettered(self, record: dict) -> None:
        at = record.get("dead_lettered_at")
        hour = at if isinstance(at, datetime) else datetime.fromtimestamp(self.clock(), UTC)
        topic, reason = record.get("source_topic", "?"), record.get("reason", "unknown")
        facts = {
            "reason": reason,
            "error": str(record.get("detail", ""))[:3000],
            "source_topic": topic,
            "source_partition": record.get("source_partition"),
            "source_offset": record.get("source_offset"),
            "link": self.link(),
        }
        self.raise_incident(
            f"dead-letter:{topic}:{reason}:{hour.strftime('%Y-%m-%dT%H')}",
            "dead-letter",
            f"A message on {topic} was dead-lettered ({reason}): {facts['error'][:300]}",
            facts,
        )

    def tick(self, now: float) -> None:
        self.check_runs(now)
        self.check_deadlines(now)
        self.deliver()

    def check_deadlines(self, now: float) -> list[str]:
        """Raise an incident for each job partition still waiting for inputs past its deadline."""
        raised = []
        for job, spec in self.spec.jobs.items():
            if not spec.deadline:
                continue
            partitioning = self.spec.job_partitioning(job)
            with self.store.begin() as tx:
                for key in self._candidates(tx, job, partitioning, spec.deadline, now):
                    due = deadline_at(partitioning, key, spec.deadline)
                    if due is None or not (now - LOOKBACK_S <= due <= now):
                        continue
                    if tx.list_runs(job=job, partition=key, limit=1):
                        continue  # it ran (or runs): its own failure is its own incident
                    snap = readiness.Snapshot(
                        latest={
                            (v.dataset, v.partition): v
                            for d, p in readiness.needed(self.spec, job, key)
                            for v in tx.latest_versions(d)
                            if v.partition == p
                        }
                    )
                    missing = missing_inputs(self.spec, snap, job, key)
                    if not missing:
                        continue
                    cause = history.root_cause(tx, self.spec, job, key)
                    cause_text = _cause(cause) if cause else _source_failure(tx, self.spec, job, key)
                    raised.append((job, key, missing, cause, cause_text, due))
        out = []
        for job, key, missing, cause, cause_text, due in raised:
            when = datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%d %H:%M UTC")
            facts = {
                "job": job,
                "partition": key,
                "missing": missing,
                "deadline": when,
                "root_cause": cause_text or "the inputs have not arrived",
                "run_id": cause.run_id if cause else None,
                "error": cause.error if cause else None,
                "link": self.link(cause.run_id if cause else None),
            }
            text = f"{job}[{key}] missed its deadline ({when}): still waiting for {', '.join(missing)}"
            if self.raise_incident(f"deadline:{job}:{key}", "deadline", text, facts):
                out.append(f"{job}[{key}]")
        return out

    def _candidates(
        self, tx: Tx, job: str, partitioning: P.Partitioning, deadline: str, now: float
    ) -> list[str]:
        """Every partition whose deadline fell within the look-back window."""
        last = latest_due(partitioning, deadline, now)
        first = latest_due(partitioning, deadline, now - LOOKBACK_S)
        if last is None or first is None:
            return []
        return P.key_range(partitioning, first, last)


def _cause(run: RunRow) -> str:
    where = f"{run.job}[{run.partition}]" if run.partition else run.job
    return f"run {run.run_id} {where} {run.state}: {(run.error or '')[:500]}"


def _source_failure(tx: Tx, spec: PipelineSpec, job: str, key: str) -> str | None:
    """A failed event for a missing input (e.g. an EL sync that failed at its source)."""
    for dataset, partition in readiness.needed(spec, job, key):
        ev = tx.newest_event(dataset, partition, status="failed")
        if ev is not None:
            return f"{dataset}[{partition}] failed at {ev.producer}: {ev.error}"
    return None


def _message(incident: str, kind: str, text: str, facts: dict[str, Any]) -> dict[str, Any]:
    fields = [
        {
            "title": k.replace("_", " "),
            "value": ", ".join(v) if isinstance(v, list) else str(v),
            "short": len(str(v)) < 40,
        }
        for k, v in facts.items()
        if v not in (None, "", [])
    ]
    color = "warning" if kind == "deadline" else "danger"
    return {
        "text": text,
        "attachments": [{"color": color, "fields": fields}],
        "incident": incident,
        "kind": kind,
        **facts,
    }
