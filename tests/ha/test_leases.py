"""Leases in the state store, on SQLite and PostgreSQL: one adopter wins, fencing, renewal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from coordinator.errors import SettingsError
from coordinator.lease import LeaseConflict, LeaseKeeper, LeaseLost
from coordinator.readiness import Candidate
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.store import leases as L
from coordinator.store.schema import metadata

SETTINGS = dict(lease_ttl_s=2.0, lease_renew_s=0.5)


def keeper(store: StateStore, name: str, **kw) -> LeaseKeeper:
    return LeaseKeeper(store, Settings(**SETTINGS), name=name, **kw)


def running_run(store: StateStore, owner: str, job: str = "j") -> str:
    with store.begin() as tx:
        [run] = tx.insert_runs(
            [Candidate(job, "2024-01-01", ())], {job: "p"}, {job: 1}, time.time(), room={"p": 1}, owner=owner
        )
    return run.run_id


def test_exactly_one_of_many_adopters_wins_a_dead_lease(store: StateStore):
    dead = keeper(store, "dead", host="elsewhere")
    dead.acquire()
    ids = {running_run(store, dead.id, f"j{i}") for i in range(3)}
    adopters = [keeper(store, f"live{i}") for i in range(4)]
    for a in adopters:
        a.acquire()
    time.sleep(SETTINGS["lease_ttl_s"] + 0.2)  # "dead" was never renewed; the others are now
    assert all(a.renew() for a in adopters)
    won: dict[str, list] = {}
    barrier = threading.Barrier(len(adopters))

    def adopt(a: LeaseKeeper) -> None:
        barrier.wait()
        for _ in range(20):  # a lease skipped while another adopter holds it is looked at again
            with store.begin() as tx:
                got = L.adopt(tx, a.id, time.time())
            if got:
                won[a.id] = got
                return
            if len(won):
                return
            time.sleep(0.02)

    threads = [threading.Thread(target=adopt, args=(a,)) for a in adopters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1, won
    [(winner, [taken])] = won.items()
    assert taken.lease.lease_id == dead.id and {r.run_id for r in taken.runs} == ids
    with store.begin() as tx:
        runs = [tx.get_run(i) for i in ids]
        assert {r.owner for r in runs} == {winner}
        assert L.adopted_from(tx, sorted(ids)) == dict.fromkeys(ids, dead.id)
        assert L.every(tx)[dead.id].state == "adopted"


def test_an_adopted_lease_is_fenced_in_its_next_transaction_and_renewal(store: StateStore):
    zombie, adopter = keeper(store, "zombie"), keeper(store, "adopter")
    zombie.acquire()
    adopter.acquire()
    with store.begin() as tx:
        zombie.hold(tx)  # live: no error
    time.sleep(SETTINGS["lease_ttl_s"] + 0.2)
    assert adopter.renew() and not zombie.fresh()  # its own clock says so before the store does
    with store.begin() as tx:
        [got] = L.adopt(tx, adopter.id, time.time())
    assert got.lease.lease_id == zombie.id
    with pytest.raises(LeaseLost, match="zombie#1 lost"), store.begin() as tx:
        zombie.hold(tx)
    assert zombie.renew() is False and zombie.lost is not None
    assert zombie.release() is None  # not ours any more: nothing is written


def test_a_renewal_in_time_keeps_the_lease(store: StateStore):
    k = keeper(store, "steady")
    k.acquire()
    k.start()
    try:
        time.sleep(SETTINGS["lease_ttl_s"] * 2)
        other = keeper(store, "other")
        other.acquire()
        with store.begin() as tx:
            assert L.adopt(tx, other.id, time.time()) == []
        assert k.fresh() and k.renewals >= 3
    finally:
        k.stop()


def test_a_live_twin_on_this_host_is_refused_and_a_dead_one_is_adopted_at_once(store: StateStore):
    first = keeper(store, "svc")
    first.acquire()
    with store.begin() as tx:  # the row says another process (this test's parent shell) holds it
        tx.conn.execute(metadata.tables["coord_leases"].update().values(pid=1, pid_start=None))
    with pytest.raises(LeaseConflict, match="already served by pid 1"):
        keeper(store, "svc").acquire()
    with store.begin() as tx:  # now a pid that is gone
        tx.conn.execute(metadata.tables["coord_leases"].update().values(pid=2**22 + 7))
    run_id = running_run(store, first.id)
    second = keeper(store, "svc")
    assert first.renew()  # the row is live: what counts is that its process is gone
    assert second.acquire().epoch == 2
    with store.begin() as tx:
        [got] = L.adopt(tx, second.id, time.time())  # at once: no TTL to wait for
        assert got.lease.lease_id == "svc#1" and [r.run_id for r in got.runs] == [run_id]


def test_a_released_lease_with_runs_left_is_adopted_at_once(store: StateStore):
    k = keeper(store, "a")
    k.acquire()
    run_id = running_run(store, k.id)
    assert k.release() == 1
    b = keeper(store, "b")
    b.acquire()
    with store.begin() as tx:
        [got] = L.adopt(tx, b.id, time.time())
        assert [r.run_id for r in got.runs] == [run_id] and got.lease.state == "released"
    c = keeper(store, "c")
    c.acquire()
    assert c.release() == 0
    with store.begin() as tx:
        assert L.every(tx)["c#1"].state == "ended" and L.adopt(tx, b.id, time.time()) == []


def test_renewal_must_fit_in_the_ttl(tmp_path: Path):
    with StateStore(f"sqlite:///{tmp_path / 's.db'}") as store, pytest.raises(SettingsError, match="half"):
        LeaseKeeper(store, Settings(lease_ttl_s=3, lease_renew_s=2))
