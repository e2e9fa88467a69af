"""The Kafka bus (confluent-kafka), for production.

Producer: idempotent, acks=all, batched (linger), so a retried send never duplicates or
reorders a partition; `flush` raises BusError unless every message was acknowledged.
Consumer: `enable.auto.commit=False`; offsets are committed only by `commit`, synchronously,
after the caller has made its effects durable, so a consumer that dies before `commit` leaves
its messages to be delivered again to the group.

A broker outage is ridden out, not reported: librdkafka reconnects by itself, the producer
keeps messages queued until `message.timeout.ms`, the consumer's poll returns nothing until
the broker is back, and `commit` retries retriable errors for `commit_timeout_s`.

Every confluent-kafka exception (KafkaException, KafkaError values, BufferError on a full
queue beyond `produce_timeout_s`) is mapped to BusError here and never crosses this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer as _KConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import Producer as _KProducer
from confluent_kafka.admin import AdminClient, NewTopic

from coordinator.bus.base import Bus, Consumer, Delivered, Message, Producer, TopicSpec
from coordinator.errors import BusError

log = logging.getLogger(__name__)
# librdkafka's own log lines (connection refused, ...) go to Python logging, not stderr.
_driver_log = logging.getLogger("coordinator.bus.kafka.librdkafka")

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "compression.type": "lz4",
    "message.timeout.ms": 300000,
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    # A killed consumer's partitions go back to the group after this long (the broker's minimum is 6 s).
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 2000,
    "fetch.wait.max.ms": 100,
}
# Errors that only say "not now": the operation is retried instead of failing.
_RETRIABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._WAIT_COORD,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError._NO_OFFSET,
}
# Message-level errors a consumer can ignore: end of partition, a topic not created yet.
_IGNORED = {KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART}


def _bus_error(action: str, exc: BaseException) -> BusError:
    return BusError(f"kafka {action} failed: {exc}")


def _is_retriable(error: KafkaError) -> bool:
    return error.code() in _RETRIABLE or error.retriable()


class KafkaBus(Bus):
    """A Kafka cluster at `bootstrap_servers`; `config` adds librdkafka settings (security, tuning)
    to producers, consumers and the admin client alike. Nothing connects until first use."""

    def __init__(
        self,
        bootstrap_servers: str,
        config: Mapping[str, Any] | None = None,
        *,
        producer_config: Mapping[str, Any] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.config = {"bootstrap.servers": bootstrap_servers, **(config or {})}
        self.producer_config = {**PRODUCER_DEFAULTS, **(producer_config or {})}
        self.consumer_config = {**CONSUMER_DEFAULTS, **(consumer_config or {})}

    def producer(self) -> KafkaProducer:
        return KafkaProducer({**self.config, **self.producer_config})

    def consumer(self, group_id: str, topics: Sequence[str]) -> KafkaConsumer:
        return KafkaConsumer({**self.config, **self.consumer_config, "group.id": group_id}, topics)

    def ensure_topics(self, topics: Sequence[TopicSpec], timeout: float = 30.0) -> None:
        if not topics:
            return
        try:
            admin = AdminClient({**self.config, "logger": _driver_log})
            futures = admin.create_topics(
                [
                    NewTopic(
                        t.name,
                        num_partitions=t.partitions,
                        replication_factor=-1,
                        config={"retention.ms": str(t.retention_ms), **t.config},
                    )
                    for t in topics
                ],
                request_timeout=timeout,
            )
            for name, future in futures.items():
                try:
                    future.result(timeout)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise _bus_error(f"creating topic {name}", exc) from exc
                except TimeoutError as exc:
                    raise BusError(f"kafka creating topic {name}: no answer in {timeout} s") from exc
        except (KafkaException, ValueError, TypeError) as exc:
            raise _bus_error("creating topics", exc) from exc


class KafkaProducer(Producer):
    def __init__(self, config: Mapping[str, Any], produce_timeout_s: float = 60.0) -> None:
        self._config = {"logger": _driver_log, **config}
        self._config.setdefault("error_cb", self._on_error)
        self._producer: _KProducer | None = None
        self._failures: list[str] = []
        self._fatal: str | None = None
        self.produce_timeout_s = produce_timeout_s

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = str(error)
        log.log(logging.INFO if _is_retriable(error) else logging.WARNING, "kafka producer: %s", error)

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self._failures.append(str(error))

    def _client(self) -> _KProducer:
        if self._producer is None:
            try:
                self._producer = _KProducer(self._config)
            except (KafkaException, ValueError, TypeError) as exc:
                raise _bus_error("creating a producer", exc) from exc
        return self._producer

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        on_delivery: Delivered | None = None,
    ) -> None:
        if self._fatal:
            raise BusError(f"kafka producer is unusable: {self._fatal}")
        producer = self._client()
        report = self._on_delivery
        if on_delivery is not None:

            def report(error: KafkaError | None, message: Any) -> None:
                self._on_delivery(error, message)
                on_delivery(None if error is None else str(error))

        deadline = None
        while True:
            try:
                producer.produce(topic, value, key, headers=list(headers) or None, on_delivery=report)
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room (backpressure).
                deadline = deadline or time.monotonic() + self.produce_timeout_s
                if time.monotonic() > deadline:
                    raise BusError(f"kafka producer queue full for {self.produce_timeout_s} s") from None
                producer.poll(0.05)
            except (KafkaException, TypeError, ValueError) as exc:
                raise _bus_error(f"producing to {topic}", exc) from exc

    def flush(self, timeout: float = 30.0) -> None:
        if self._producer is None:
            return
        try:
            remaining = self._producer.flush(timeout)
        except KafkaException as exc:
            raise _bus_error("flush", exc) from exc
        failures, self._failures = self._failures, []
        if remaining:
            raise BusError(f"kafka flush: {remaining} messages not acknowledged after {timeout} s")
        if failures:
            raise BusError(f"kafka delivery failed for {len(failures)} messages: {failures[0]}")
        if self._fatal:
            raise BusError(f"kafka producer is unusable: {self._fatal}")

    def poll(self) -> None:
        if self._producer is not None:
            try:
                self._producer.poll(0)
            except KafkaException as exc:
                raise _bus_error("poll", exc) from exc

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer = None


class KafkaConsumer(Consumer):
    def __init__(
        self, config: Mapping[str, Any], topics: Sequence[str], commit_timeout_s: float = 60.0
    ) -> None:
        self._config = {"logger": _driver_log, **config}
        self._config.setdefault("error_cb", self._on_error)
        self.topics = list(topics)
        self.commit_timeout_s = commit_timeout_s
        self._consumer: _KConsumer | None = None
        self._unconfirmed: dict[tuple[str, int], int] = {}  # committed in the background

    @staticmethod
    def _on_error(error: KafkaError) -> None:
        # A broker away (transport errors, all brokers down) is expected and ridden out.
        log.log(logging.INFO if _is_retriable(error) else logging.WARNING, "kafka consumer: %s", error)

    def _client(self) -> _KConsumer:
        if self._consumer is None:
            try:
                consumer = _KConsumer(self._config)
                consumer.subscribe(self.topics)
            except (KafkaException, ValueError, TypeError) as exc:
                raise _bus_error("creating a consumer", exc) from exc
            self._consumer = consumer
        return self._consumer

    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Message]:
        try:
            # consume(n, timeout) waits the whole timeout unless n messages arrive: take what is
            # there, else wait for the first message only, then what came with it
            client = self._client()
            raw = client.consume(max_messages, 0)
            if not raw and timeout > 0:
                first = client.poll(timeout)
                if first is not None:
                    raw = [first, *(client.consume(max_messages - 1, 0) if max_messages > 1 else ())]
        except (KafkaException, RuntimeError) as exc:
            raise _bus_error("consume", exc) from exc
        out: list[Message] = []
        append = out.append
        for m in raw:
            error = m.error()
            if error is not None:
                if error.code() in _IGNORED or _is_retriable(error):
                    log.debug("kafka consumer: %s", error)
                    continue
                raise BusError(f"kafka consume failed: {error}")
            headers = m.headers()
            append(
                Message(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.key(),
                    m.value(),
                    tuple(headers) if headers else (),
                    m.timestamp()[1],
                )
            )
        return out

    def commit(self, messages: Sequence[Message], wait: bool = True) -> None:
        if not messages:
            return
        marks: dict[tuple[str, int], int] = {}
        for m in messages:
            if m.offset + 1 > marks.get((m.topic, m.partition), -1):
                marks[(m.topic, m.partition)] = m.offset + 1
        offsets = [TopicPartition(t, p, o) for (t, p), o in marks.items()]
        consumer = self._client()
        if not wait:
            self._unconfirmed.update(marks)
            try:
                consumer.commit(offsets=offsets, asynchronous=True)
                return
            except KafkaException as exc:  # not even queued: commit synchronously below
                log.info("kafka commit in the background refused (%s); committing now", exc.args[0])
        deadline = time.monotonic() + self.commit_timeout_s
        pause = 0.1
        while True:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as exc:
                error = exc.args[0]
                retriable = isinstance(error, KafkaError) and _is_retriable(error)
                if not retriable or time.monotonic() > deadline:
                    raise _bus_error("commit", exc) from exc
                log.info("kafka commit will be retried: %s", error)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
            except RuntimeError as exc:
                raise _bus_error("commit", exc) from exc

    def lag(self) -> int | None:
        """Messages after this consumer's position in its assigned partitions. A partition it has
        not read from yet (just assigned, e.g. taken over from another member that consumed it
        all) has no position: the group's committed offset stands in, else the low watermark."""
        if self._consumer is None:
            return None
        try:
            assigned = self._consumer.assignment()
            positions = self._consumer.position(assigned)
            unknown = [tp for tp in positions if tp.offset < 0]
            committed = {}
            if unknown:
                for tp in self._consumer.committed(unknown, timeout=5):
                    committed[(tp.topic, tp.partition)] = tp.offset
            total = 0
            for tp in positions:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                at = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), -1)
                total += high - (at if at >= 0 else low)
            return total
        except (KafkaException, RuntimeError) as exc:
            raise _bus_error("lag", exc) from exc

    def close(self) -> None:
        if self._consumer is not None and self._unconfirmed:
            # the last background commits, made sure of: a clean stop replays nothing
            marks, self._unconfirmed = self._unconfirmed, {}
            try:
                self._consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in marks.items()], asynchronous=False
                )
            except KafkaException as exc:  # e.g. partitions moved away: the group replays, harmlessly
                log.info("kafka: last offsets not committed on close (%s)", exc.args[0])
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                raise _bus_error("close", exc) from exc
