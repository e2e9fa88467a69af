"""Staleness: job partitions whose last live run was built on a version since superseded.

A job partition is stale when an input partition it consumed has a newer version (by
produced_at, then event id — readiness' order) than the one its last live run read. Under the
default `rerun_on: any_new` that lasts only until the re-run readiness creates has run; under
`rerun_on: all_new`, or for a `latest` input (which gates and re-runs nothing), it lasts until
the other inputs are new too or someone runs `coord backfill`. `coord status` and the UI's API
show each as "built on v1; v2 exists", numbering a partition's versions 1, 2, ... in that
order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coordinator.readiness import Key, Version

if TYPE_CHECKING:
    from coordinator.store.store import Tx


@dataclass(frozen=True, slots=True)
class Stale:
    job: str
    partition: str | None
    built_on: Version  # what the last live run consumed
    newest: Version  # the version recorded since
    built_on_n: int = 0  # its number among the partition's versions (0: not recorded any more)
    newest_n: int = 0

    def describe(self) -> str:
        where = self.built_on.dataset + (f"[{self.built_on.partition}]" if self.built_on.partition else "")
        return f"built on {where} v{self.built_on_n or '?'}; v{self.newest_n or '?'} exists"

    def as_json(self) -> dict[str, object]:
        return {
            "job": self.job,
            "partition": self.partition,
            "dataset": self.built_on.dataset,
            "input_partition": self.built_on.partition,
            "built_on": {"event_id": self.built_on.event_id, "version": self.built_on_n},
            "newest": {"event_id": self.newest.event_id, "version": self.newest_n},
            "reason": self.describe(),
        }


def superseded(
    consumed: Mapping[Key, Sequence[Version]],
    latest: Mapping[Key, Version],
    jobs: Iterable[str] | None = None,
) -> list[Stale]:
    """Pure: each consumed input of each job partition that `latest` holds a newer version of."""
    wanted = None if jobs is None else set(jobs)
    out: list[Stale] = []
    for (job, partition), inputs in consumed.items():
        if wanted is not None and job not in wanted:
            continue
        for v in inputs:
            now = latest.get((v.dataset, v.partition))
            if now is not None and now.newer_than(v):
                out.append(Stale(job, partition, v, now))
    return sorted(
        out, key=lambda s: (s.job, s.partition or "", s.built_on.dataset, s.built_on.partition or "")
    )


def stale_partitions(tx: Tx, jobs: Iterable[str] | None = None) -> list[Stale]:
    """The stale job partitions the store knows of (of `jobs` only, when given), numbered."""
    latest = {(v.dataset, v.partition): v for v in tx.latest_versions()}
    found = superseded(tx.consumed_inputs(), latest, jobs)
    numbered: list[Stale] = []
    histories: dict[Key, list[str]] = {}
    for s in found:
        key = (s.built_on.dataset, s.built_on.partition)
        if key not in histories:
            histories[key] = [eid for _, eid in tx.version_history(*key)]
        ids = histories[key]
        n = {eid: i + 1 for i, eid in enumerate(ids)}
        numbered.append(
            Stale(
                s.job,
                s.partition,
                s.built_on,
                s.newest,
                n.get(s.built_on.event_id, 0),
                n.get(s.newest.event_id, 0),
            )
        )
    return numbered
