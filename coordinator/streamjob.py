"""The stream worker: a faust-streaming app that turns a click topic into hourly partitions.

    python -m coordinator.streamjob CONFIG.json      (the `stream` kind's launcher starts it)

It runs in its own interpreter (`.venv-stream`, made by `scripts/bootstrap stream`), because
faust-streaming's dependencies cannot be installed beside the coordinator's: so this module
imports the standard library, faust, fastavro and pyarrow only — never the rest of the package.

faust is the runtime (consumer group, agents, the producer); completion is the project's, since
faust's own window close is fired by a wall-clock timer, lives in memory and is lost on a
rebalance. Here:

- **Window contents are idempotent.** Each event's (topic, partition, offset) is compared with
  the highest offset already applied for that partition, which is saved with the contents; a
  replay after a SIGKILL (faust commits offsets later than we apply) skips what was applied.
  A state made afresh (a first start, another host's folder, a deleted file) gets a new
  generation and with it a consumer group of its own, `<group>.<generation>`, so it reads the
  topic from its start rather than from offsets committed for a state it does not hold.
- **The watermark** is the minimum, over the source topic's partitions still behind their end
  offset, of the largest event time applied in each, minus the allowed lateness: a partition far
  behind holds it back, so its backlog is not made late by another partition running ahead; a
  partition caught up to its end offset (no lag: idle, or read to its end) does not, and when
  all are caught up it is the largest event time seen. It only moves forward and is saved with
  the state, so a restart or a rebalance resumes it. The hourly window [h, h+1h) closes once the
  watermark reaches h+1h; an event older than the watermark is late: counted, not applied.
- **Two workers of one job** (a handover, a coordinator that lost its lease and is not dead yet)
  share its consumer group, and faust splits the partitions between them. The state is kept per
  source partition in a folder both read (coordinator/streamstate.py): a partition's file is
  written by the worker faust assigned it to, which claims it on assignment and resumes from it;
  the watermark is computed over every partition's file and end offset, so a window is closed
  only when every partition has passed it, whoever holds them; it is announced once, by the first
  worker to find it closable, holding the folder's lock.
- **In batches**: events are applied in memory and saved every `batch_max` events, every
  `flush_s` seconds and whenever a window closes; only then are they acknowledged to faust (a
  `noack` stream), so faust never commits an offset the saved state does not hold.
- **Late data** (for a window already closed) is counted; with `late_data: reannounce` it also
  revises the window, kept `revise_within_s` behind the watermark, and the revision is announced
  at the next flush as a new version (its own folder `<window>.v<n>`, the event id suffixed
  `:v<n>`), so the batch jobs downstream re-run through the usual readiness rules.
- **Each closed window is announced once** as a completion event of the output dataset,
  partition `YYYY-MM-DDTHH`, with the event id `stream:<job>:<dataset>:<window>`, its location
  the window's folder (the job's output template with `{partition}` replaced by the window)
  holding one Parquet file, `part-0.parquet` (columns `hour`, the key field, `events`), as Spark
  reads a partition. Order (coordinator/streamwindows.flush_batch):
  0. the parts this worker owns saved, the others read, the watermark moved, holding the lock;
  1. the window's file written and flushed: to a hidden temporary file beside it, fsynced, renamed
     into place and the folder fsynced, so a reader sees the whole file or none;
  2. the completion event produced and acknowledged by the broker;
  3. the window marked announced in the saved state (then the lock released);
  4. the events acknowledged to faust, which commits only acknowledged offsets.
  A crash between 2 and 3 announces the window again under the same id, which the coordinator
  de-duplicates; a crash before 2 rewrites the file from the saved state and announces it.

The event is written in the coordinator's wire format (topics/completion_event.v2.avsc behind
the 0xCE 0x02 header, keyed by dataset, the event id in the `event_id` header), so the
coordinator reads it as it reads any producer's.

The state (`state_dir`, default `<run folder>/state/`) and a heartbeat file of this worker's own
(`heartbeat-<worker token>.json`: last beat, the partitions held and their lag, the job's
watermark, windows open, counters) live in the run folder the launcher gives; the launcher reads
every worker's heartbeat for the job's health (coordinator/streambeats.py).

A run folder holding the previous release's `state.json` (one file per job) and no `job.json` in
the state folder yet is converted at start, nothing re-read nor announced again; one that cannot
be converted stops the worker saying why (coordinator/streamupgrade.py). The broker's security
settings (COORD_KAFKA_SECURITY) come in the environment, as faust's credentials
(coordinator/streambroker.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from coordinator.streambeats import write_beat
from coordinator.streambroker import SECURITY_ENV, broker_credentials
from coordinator.streamstate import WindowState
from coordinator.streamupgrade import LEGACY_NAME, LegacyStateError, upgrade
from coordinator.streamwindows import (
    Announcer,
    flush_batch,
    load_event_schema,
    log,
    parse_click,
)

ASK_S = 5.0  # the longest a flush waits for the end offsets of partitions held elsewhere


class EndOffsets:
    """The end offsets of partitions this worker does not hold, from a client of its own (no
    group), started on first use in the worker's loop. Not faust's consumer: its calls run on its
    thread's queue, behind a rebalance's callback, which waits for this worker's acknowledgements
    (faust's wait_empty), which wait for the flush that asks: a deadlock."""

    def __init__(self, bootstrap: str, auth: dict[str, Any]) -> None:
        self.bootstrap, self.auth, self.client = bootstrap, auth, None

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        if self.client is None:
            from aiokafka import AIOKafkaConsumer

            client = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.auth)
            await client.start()
            self.client = client
        return await self.client.end_offsets(partitions)


# --------------------------------------------------------------------------- the faust app
def build_app(config: dict[str, Any]) -> Any:
    import faust
    from aiokafka import TopicPartition
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    run_dir = Path(config["run_dir"])
    job, dataset, topic = config["job"], config["dataset"], config["topic"]
    revise = config.get("revise_within_s") if config.get("late_data") == "reannounce" else None
    state_dir = Path(config.get("state_dir") or run_dir / "state")
    upgrade(run_dir / LEGACY_NAME, state_dir, float(config["lateness_s"]))  # the previous release's
    state = WindowState(state_dir, float(config["lateness_s"]), revise)  # its generation names the group
    schema = load_event_schema(Path(config["topics_dir"]))
    time_field, key_field = config["time_field"], config.get("key_field")

    session_s = float(config.get("session_timeout_s", 10))  # a dead worker's partitions move after it
    app = faust.App(
        f"{config['group']}.{state.generation}",
        broker=f"kafka://{config['bootstrap']}",
        broker_credentials=broker_credentials(config.get("security") or {}),
        store="memory://",
        datadir=str(run_dir / "faust"),
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=int(config["web_port"]),
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_s,
        broker_commit_interval=float(config.get("commit_interval_s", 2.8)),
        broker_heartbeat_interval=min(3.0, session_s / 3),
        topic_allow_declare=False,
    )
    source = app.topic(topic, value_serializer="raw", key_serializer="raw")

    async def send(ident: str, value: bytes) -> None:
        await app.producer.send_and_wait(
            config["events_topic"],
            dataset.encode(),
            value,
            partition=None,
            timestamp=None,
            headers=[("event_id", ident.encode())],
        )

    offsets = EndOffsets(config["bootstrap"], credentials_to_aiokafka_auth(app.conf.broker_credentials))
    announce = Announcer(config["output"], job, dataset, key_field or "key", schema, send)
    pending: list[tuple[str, Any]] = []  # (source, event) applied, not acknowledged to faust yet
    flushing = asyncio.Lock()
    batch_max = int(config.get("batch_max", 500))
    last_sync = [0.0]

    def assigned() -> list[Any]:
        return [tp for tp in app.consumer.assignment() if tp.topic == topic]

    def local_ends() -> dict[str, int | None] | None:
        """Every source partition's end offset as known without asking the broker: the assigned
        ones' from their last fetch (None: not fetched yet); the others' unknown (None), so that
        between syncs a partition held elsewhere holds the watermark at what its file said: that
        it had caught up then says nothing of what has come since."""
        mine, count = assigned(), app.consumer.topic_partitions(topic)
        if not mine or count is None:
            return None
        known: dict[str, int | None] = {f"{topic}:{p}": None for p in range(count)}
        known.update({f"{topic}:{tp.partition}": app.consumer.highwater(tp) for tp in mine})
        return known

    async def ends() -> dict[str, int | None] | None:
        """Every source partition's end offset: the assigned ones' from their last fetch, the
        others' (held by another worker of the job, or by none) asked of the broker."""
        mine, count = assigned(), app.consumer.topic_partitions(topic)
        if not mine or count is None:
            return None
        known: dict[str, int | None] = {f"{topic}:{tp.partition}": app.consumer.highwater(tp) for tp in mine}
        others = [TopicPartition(topic, p) for p in range(count) if f"{topic}:{p}" not in known]
        if others:
            known.update({f"{tp.topic}:{tp.partition}": None for tp in others})  # unknown: behind
            try:
                asked = await asyncio.wait_for(offsets.end_offsets(others), ASK_S)
            except Exception as exc:  # the broker away or slow: asked again at the next flush
                log.info("the end offsets of %d partitions held elsewhere are unknown: %r", len(others), exc)
            else:
                known.update({f"{tp.topic}:{tp.partition}": end for tp, end in asked.items()})
        return known

    async def flush(stream: Any) -> None:
        """Save the state, announce the windows it closed, then acknowledge the events it holds:
        faust commits only acknowledged offsets, so nothing is committed before it is saved."""
        async with flushing:
            batch = pending[:]
            del pending[:]
            last_sync[0] = time.monotonic()
            await flush_batch(state, batch, announce, stream.ack, ends)

    @app.on_partitions_assigned.connect
    async def claim(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Own the partitions of this assignment: each resumes from its file (another worker may
        have written it since); events held of a partition reloaded or gone are not acknowledged."""
        sources = [f"{tp.topic}:{tp.partition}" for tp in assigned if tp.topic == topic]
        async with flushing:
            reloaded = await state.aclaim(sources, int(getattr(app, "consumer_generation_id", -1) or -1))
            pending[:] = [(s, e) for s, e in pending if s in state.parts and s not in reloaded]
        refused = [s for s in sources if s not in state.parts]
        if refused:  # a newer generation's claim: this assignment is stale. Exit, acknowledging
            # nothing: faust commits none of it, and the restarted worker joins a newer generation
            log.error("%s claimed in a newer group generation: exiting to rejoin", refused)
            os._exit(3)
        log.info("assigned %s (generation %s)", sorted(sources), getattr(app, "consumer_generation_id", None))

    streams: list[Any] = []

    @app.agent(source)
    async def clicks(stream: Any) -> None:
        manual = stream.noack()
        streams.append(manual)
        async for event in manual.events():
            message = event.message
            where = f"{message.topic}:{message.partition}"
            when: float | None
            try:
                when, key = parse_click(message.value, time_field, key_field)
            except ValueError as exc:
                log.warning("%s offset %d refused: %s", where, message.offset, exc)
                when, key = None, ""
            outcome = state.apply(where, message.offset, when, key)  # foreign: acknowledged only
            if outcome == "late":
                log.info(
                    "%s offset %d is late (watermark %s): counted, not applied",
                    where,
                    message.offset,
                    state.watermark,
                )
            pending.append((where, event))
            state.advance(local_ends())
            if len(pending) >= batch_max or state.closable():  # revisions: at the next flush
                await flush(manual)

    @app.timer(interval=float(config.get("flush_s", 0.2)))
    async def flush_quiet() -> None:
        """A batch left when the topic goes quiet is saved and acknowledged all the same; a
        partition that caught up meanwhile (its last fetch) lets the watermark move on; and every
        second the other workers' parts are read again (the heartbeat shows the whole job)."""
        if not streams:
            return
        due = time.monotonic() - last_sync[0] >= 1.0
        if pending or due or state.advance(local_ends()) is not None and state.closable():
            await flush(streams[0])

    def lag() -> int | None:
        """Messages behind the end of the partitions held here (None: an end not fetched yet)."""
        behind = 0
        for tp in assigned():
            end, part = app.consumer.highwater(tp), state.parts.get(f"{topic}:{tp.partition}")
            if end is None:
                return None
            behind += max(0, end - (part.applied + 1 if part else 0))
        return behind

    @app.timer(interval=float(config.get("heartbeat_s", 2.0)))
    async def heartbeat() -> None:
        parent = config.get("parent_pid")
        if parent is not None and os.getppid() != parent:
            log.error("the coordinator (pid %d) is gone; exiting", parent)
            os._exit(1)
        beat = {
            "at": time.time(),
            "pid": os.getpid(),
            "lag": lag(),
            "watermark": state.watermark,
            "windows_open": len(state.open_windows()),
            "announced": len(state.announced),
            "partitions": sorted(state.parts),
            **state.counts(),
        }
        write_beat(run_dir, state.owner, beat)  # a file per worker: two may share the run folder

    return app


def die_with_parent(parent: int | None) -> None:
    """SIGTERM this worker when the coordinator that started it dies (Linux's PR_SET_PDEATHSIG),
    so that a killed coordinator leaves no worker behind to race the one its successor starts;
    a parent already gone (it died before this call) ends the worker at once."""
    if parent is None:
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the heartbeat's parent check still ends it
        pass
    if os.getppid() != parent:
        log.error("the coordinator (pid %d) is gone; exiting", parent)
        os._exit(1)


def load_config(path: Path) -> dict[str, Any]:
    """The worker's config file, and the broker's security settings from the environment (they
    never go in the file, which stays in the run folder)."""
    config = json.loads(path.read_text())
    config["security"] = json.loads(os.environ.pop(SECURITY_ENV, "") or "{}")
    return config


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m coordinator.streamjob CONFIG.json", file=sys.stderr)
        return 2
    config = load_config(Path(args[0]))
    die_with_parent(config.get("parent_pid"))
    from faust import Worker

    try:
        app = build_app(config)
    except LegacyStateError as exc:  # one line: the supervisor's log repeats the worker's last
        print(
            f"{exc.path} (the previous release's stream state) {exc.reason}; the worker does not "
            "start, since starting afresh would read the topic from its start and announce every "
            "window again: repair the file, or move it aside to start afresh all the same",
            file=sys.stderr,
        )
        return os.EX_CONFIG
    Worker(app, loglevel="INFO").execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
