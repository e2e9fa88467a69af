"""Failover between two `coord run` processes over one PostgreSQL store and one Kafka group.

An instance is SIGKILLed (with its jobs, or leaving them running) or SIGSTOPped past its lease
while both run jobs and new events keep coming. What counts is the jobs' own ledger: every
(job, partition) ends exactly once, within the lease TTL + 30 s of the kill, the pool is whole
again afterwards, and a paused instance that wakes up writes and publishes nothing.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from coordinator.intake import EventIntake
from tests.conftest import unique
from tests.ha.harness import JOBS, RENEW_S, TTL_S, Cluster, days, ends, kill_jobs_of, most_at_once, starts

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, kafka_bootstrap: str, kafka_topic: str):
    c = Cluster(tmp_path, postgres_url, kafka_bootstrap, kafka_topic)
    yield c
    c.close()


def both_running(c: Cluster, first: int) -> int:
    """Start a and b, publish days until each runs jobs; the next day not yet published."""
    c.start("a")
    c.start("b")
    c.wait(lambda: {"a#1", "b#1"} <= set(c.leases()), 60, lambda: c.stderr("a") + c.stderr("b"))
    # both hold partitions of the topic: days published earlier could all go to the first to join
    c.wait(
        lambda: sorted(n for n, held in c.assigned().items() if held) == ["a", "b"],
        60,
        lambda: f"{c.assigned()}\n{c.stderr('a')}{c.stderr('b')}",
    )
    day = first
    deadline = time.monotonic() + 60
    while not (c.running_of("a") and c.running_of("b")):
        assert time.monotonic() < deadline, [(r.partition, r.state, r.owner) for r in c.runs()]
        if day < first + 6:
            c.publish(days(day, 1))
            day += 1
        time.sleep(0.3)
    return day


def all_succeeded(c: Cluster, partitions: list[str]) -> bool:
    runs = c.runs()
    done = {(r.job, r.partition) for r in runs if r.state == "succeeded"}
    return all((j, p) in done for j in JOBS for p in partitions)


def runs_table(c: Cluster) -> str:
    return "\n".join(f"{r.job}[{r.partition}] {r.state} a{r.attempt} {r.owner} {r.error}" for r in c.runs())


def test_a_killed_instance_and_its_jobs_are_taken_over_and_every_run_ends_once(cluster: Cluster):
    c = cluster
    day = both_running(c, 1)
    dead = {r.run_id for r in c.running_of("a")}
    c.procs["a"].send_signal(signal.SIGKILL)
    c.procs["a"].wait()
    assert kill_jobs_of("a", c.home) >= 1
    killed = time.time()
    # a job may end between the look above and the kill: its result stands in attempt 1
    ended_before_kill = set(ends(c.ledger))
    for _ in range(3):  # new events keep coming
        c.publish(days(day, 1))
        day += 1
        time.sleep(0.5)
    wanted = days(1, day - 1)
    c.wait(lambda: all_succeeded(c, wanted), TTL_S + 30, lambda: runs_table(c) + c.stderr("b"))
    took = time.time() - killed
    assert took <= TTL_S + 30
    assert set(ends(c.ledger).values()) == {1} and len(ends(c.ledger)) == len(JOBS) * len(wanted), ends(
        c.ledger
    )
    lease = c.leases()["a#1"]
    assert (lease.state, lease.adopted_by) == ("adopted", "b#1")
    delay = lease.ended_at - killed
    assert delay <= TTL_S + RENEW_S + 3, delay
    with c.store.begin() as tx:
        for run_id in dead:  # the killed attempt is lost, the retry policy's next one succeeded
            run, attempts = tx.get_run(run_id), tx.attempts(run_id)
            if (run.job, run.partition) in ended_before_kill:
                assert (run.state, run.attempt) == ("succeeded", 1), attempts
                continue
            assert run.state == "succeeded" and run.attempt >= 2, attempts
            assert attempts[0]["state"] == "failed" and attempts[0]["error"].startswith("lost: ")
            assert "a#1" in attempts[0]["error"]
    # the pool is whole again: eight jobs of one pool of eight run at once on the survivor
    since = time.time()
    more = days(day, 2)
    c.publish(more)
    c.wait(lambda: all_succeeded(c, more), 60, lambda: runs_table(c))
    assert most_at_once(c.ledger, "work", since) == c.pool
    print(
        f"\nadopted {delay:.1f} s after the kill, {lease.ended_at - lease.renewed_at:.1f} s after the "
        f"last renewal (ttl {TTL_S:g} s); "
        f"all {len(wanted)} partitions done {took:.1f} s after the kill"
    )


def test_a_killed_instance_s_running_jobs_are_reattached_not_relaunched(
    tmp_path: Path, postgres_url: str, kafka_bootstrap: str, kafka_topic: str
):
    c = Cluster(tmp_path, postgres_url, kafka_bootstrap, kafka_topic, sleep=7.0)
    try:
        day = both_running(c, 1)
        dead = {r.run_id for r in c.running_of("a")}
        c.procs["a"].send_signal(signal.SIGKILL)  # its jobs run on, as they would on a live host
        c.procs["a"].wait()
        killed = time.time()
        c.publish(days(day, 1))
        wanted = days(1, day)
        c.wait(lambda: all_succeeded(c, wanted), TTL_S + 30, lambda: runs_table(c) + c.stderr("b"))
        assert set(starts(c.ledger).values()) == {1}, starts(c.ledger)  # none launched twice
        assert set(ends(c.ledger).values()) == {1} and len(ends(c.ledger)) == len(JOBS) * len(wanted)
        with c.store.begin() as tx:
            for run_id in dead:
                run = tx.get_run(run_id)
                assert (run.state, run.attempt, run.owner) == ("succeeded", 1, "b#1")
        print(f"\nre-attached {len(dead)} run(s); all done {time.time() - killed:.1f} s after the kill")
    finally:
        c.close()


def test_a_paused_instance_that_wakes_after_adoption_writes_and_publishes_nothing(cluster: Cluster):
    c = cluster
    day = both_running(c, 1)
    theirs = {r.run_id for r in c.running_of("a")}
    c.procs["a"].send_signal(signal.SIGSTOP)
    paused = time.time()
    c.wait(lambda: c.leases()["a#1"].state == "adopted", TTL_S + 15, lambda: runs_table(c) + c.stderr("b"))
    wanted = days(1, day - 1)
    c.wait(lambda: all_succeeded(c, wanted), 40, lambda: runs_table(c) + c.stderr("b"))
    c.procs["a"].send_signal(signal.SIGCONT)
    try:
        code = c.procs["a"].wait(20)
    except Exception:
        pytest.fail("the woken instance did not stop:\n" + c.stderr("a")[-3000:])
    assert code != 0
    assert "lease a#1 lost" in c.stderr("a"), c.stderr("a")[-3000:]
    time.sleep(1)
    assert set(starts(c.ledger).values()) == {1} and set(ends(c.ledger).values()) == {1}
    with c.store.begin() as tx:
        for run_id in theirs:  # finished once, by the adopter, in the attempt a started
            assert [a["attempt"] for a in tx.attempts(run_id)] == [1]
            assert tx.get_run(run_id).owner == "b#1"
    # every output event is on the topic exactly once
    settings = c.settings.model_copy(update={"consumer_group": unique("observer")})
    seen: Counter = Counter()
    with EventIntake(c.publisher.bus, settings, group_id=settings.consumer_group) as intake:
        deadline = time.monotonic() + 30
        while sum(seen.values()) < len(JOBS) * len(wanted) and time.monotonic() < deadline:
            seen.update(e.event_id for e in intake.poll(500, 0.5).events if e.producer == "coordinator")
        time.sleep(2)  # and nothing more comes
        seen.update(e.event_id for e in intake.poll(500, 1.0).events if e.producer == "coordinator")
    assert len(seen) == len(JOBS) * len(wanted) and set(seen.values()) == {1}, seen
    print(f"\npaused {time.time() - paused:.1f} s; {len(theirs)} of its runs finished by the adopter")
