"""The Kafka bus (confluent-kafka), for production.

Producer: idempotent, acks=all, batched (linger), so a retried send never duplicates or
reorders a partition; `flush` raises BusError unless every message was acknowledged.
Consumer: `enable.auto.commit=False`; offsets are committed only by `commit`, synchronously,
after the caller has made its effects durable, so a consumer that dies before `commit` leaves
its messages to be delivered again to the group. With an `instance_id` the consumer is a static
member (`group.instance.id`): a restarted instance rejoins as itself and gets its partitions
back at once instead of after a rebalance (a clean stop then does not leave the group either:
its partitions wait for it for up to the session timeout).

A broker outage is ridden out for `unreachable_s` (settings.bus_unreachable_s, 30 s by
default): librdkafka reconnects by itself, a message is retried until that long has passed,
the consumer's poll returns nothing, `commit` retries retriable errors. A bus unreachable for
longer is one clear BusError that is not retriable ("cannot reach Kafka at ... for 30 s"), so
`run`, `serve` and `publish` stop with it instead of logging connection errors forever.

Every confluent-kafka exception (KafkaException, KafkaError values, BufferError on a full
queue) is mapped to BusError here and never crosses this module; `BusError.retriable` comes
from `retriable(error)`: librdkafka's own classification (`KafkaError.retriable()`,
`fatal()`) completed by the codes in bus/kafka_errors.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer as _KConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import Producer as _KProducer

from coordinator.bus import kafka_topics
from coordinator.bus.base import Bus, Consumer, Delivered, DeliveryFailure, Message, Producer, TopicSpec
from coordinator.bus.kafka_errors import IGNORED, UNREACHABLE, DriverLog, error_of, lasting, retriable
from coordinator.bus.kafka_errors import bus_error as _bus_error
from coordinator.errors import BusError

log = logging.getLogger(__name__)
_driver_log = DriverLog()  # librdkafka's own lines, its reconnect FAILs demoted (kafka_errors.py)

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "compression.type": "lz4",
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    # A killed consumer's partitions go back to the group after this long (the broker's minimum is 6 s).
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 2000,
    "fetch.wait.max.ms": 100,
}

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
        unreachable_s: float = 30.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.config = {"bootstrap.servers": bootstrap_servers, **(config or {})}
        self.unreachable_s = unreachable_s
        self.producer_config = {
            "message.timeout.ms": int(unreachable_s * 1000),
            **PRODUCER_DEFAULTS,
            **(producer_config or {}),
        }
        self.consumer_config = {**CONSUMER_DEFAULTS, **(consumer_config or {})}
        self._limits: dict[str, int] = {}

    def producer(
        self, *, max_message_bytes: int | None = None, delivery_timeout_s: float | None = None
    ) -> KafkaProducer:
        config = {**self.config, **self.producer_config}
        if max_message_bytes is not None:
            # a message as large as the topic takes, in a batch of its own size, sent as is (a
            # compressed batch of incompressible bytes can come out larger than the limit)
            size = min(max(max_message_bytes, 1000), 1_000_000_000)
            config.update({"message.max.bytes": size, "batch.size": size, "compression.type": "none"})
        if delivery_timeout_s is not None:
            config["message.timeout.ms"] = max(1, int(delivery_timeout_s * 1000))
        return KafkaProducer(config, produce_timeout_s=self.unreachable_s, where=self.bootstrap_servers)

    def consumer(
        self, group_id: str, topics: Sequence[str], *, instance_id: str | None = None
    ) -> KafkaConsumer:
        config = {**self.config, **self.consumer_config, "group.id": group_id}
        if instance_id:
            config["group.instance.id"] = instance_id
        return KafkaConsumer(config, topics, unreachable_s=self.unreachable_s, where=self.bootstrap_servers)

    def max_message_bytes(self, topic: str) -> int | None:
        if topic not in self._limits:  # asked once per topic
            self._limits[topic] = kafka_topics.max_message_bytes(self.config, topic)
        return self._limits[topic]

    def read_tail(self, topic: str, last: int) -> list[Message]:
        return kafka_topics.read_tail(self.config, topic, last)

    def ensure_topics(self, topics: Sequence[TopicSpec], timeout: float | None = None) -> None:
        wait = timeout if timeout is not None else self.unreachable_s
        kafka_topics.ensure_topics(self.config, topics, wait, self.bootstrap_servers)


class KafkaProducer(Producer):
    def __init__(self, config: Mapping[str, Any], produce_timeout_s: float = 30.0, where: str = "") -> None:
        self._config = {"logger": _driver_log, **config}
        self._config.setdefault("error_cb", self._on_error)
        self._producer: _KProducer | None = None
        self._failures: list[KafkaError] = []
        self._fatal: str | None = None
        self.produce_timeout_s = produce_timeout_s
        self.where = where or str(config.get("bootstrap.servers", ""))

    def _on_error(self, error: KafkaError) -> None:
        if lasting(error):
            if self._fatal is None:  # said once here, and again by the BusError it becomes
                log.warning("kafka producer: %s", error.str())
            self._fatal = error.str()
            return
        log.log(logging.INFO if retriable(error) else logging.WARNING, "kafka producer: %s", error)

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self._failures.append(error)

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
            raise BusError(f"kafka producer is unusable: {self._fatal}", retriable=False)
        producer = self._client()
        report = self._on_delivery
        if on_delivery is not None:

            def report(error: KafkaError | None, message: Any) -> None:
                self._on_delivery(error, message)
                on_delivery(None if error is None else DeliveryFailure(str(error), retriable(error)))

        deadline = None
        while True:
            try:
                producer.produce(topic, value, key, headers=list(headers) or None, on_delivery=report)
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room (backpressure).
                deadline = deadline or time.monotonic() + self.produce_timeout_s
                if time.monotonic() > deadline:
                    raise BusError(
                        f"kafka producer queue full for {self.produce_timeout_s:g} s: is Kafka at "
                        f"{self.where} reachable?",
                        retriable=False,
                    ) from None
                producer.poll(0.05)
            except (KafkaException, TypeError, ValueError) as exc:
                raise _bus_error(f"producing to {topic}", exc) from exc

    def flush(self, timeout: float = 30.0) -> None:
        if self._producer is None:
            return
        deadline = time.monotonic() + timeout
        try:  # in slices: an error waiting will not cure (credentials, TLS) ends the wait at once
            remaining = self._producer.flush(min(timeout, 0.5))
            while remaining and not self._fatal and time.monotonic() < deadline:
                remaining = self._producer.flush(min(0.5, max(0.0, deadline - time.monotonic())))
        except KafkaException as exc:
            raise _bus_error("flush", exc) from exc
        if self._fatal:
            raise BusError(f"kafka producer is unusable: {self._fatal}", retriable=False)
        failures, self._failures = self._failures, []
        if remaining:
            raise BusError(f"kafka flush: {remaining} messages not acknowledged after {timeout:g} s")
        if failures:
            first = failures[0]
            if first.code() == KafkaError._MSG_TIMED_OUT:
                timeout_s = self._config.get("message.timeout.ms", 0) / 1000
                raise BusError(
                    f"kafka delivery failed: cannot reach Kafka at {self.where}: "
                    f"{len(failures)} messages not delivered in {timeout_s:g} s ({first.str()})",
                    retriable=False,
                )
            raise BusError(
                f"kafka delivery failed for {len(failures)} messages: {first.str()}",
                retriable=all(retriable(f) for f in failures),
            )
        if self._fatal:
            raise BusError(f"kafka producer is unusable: {self._fatal}", retriable=False)

    def poll(self) -> None:
        if self._producer is not None:
            try:
                self._producer.poll(0)
            except KafkaException as exc:
                raise _bus_error("poll", exc) from exc

    def close(self, timeout: float = 30.0) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer = None


class KafkaConsumer(Consumer):
    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        commit_timeout_s: float = 60.0,
        *,
        unreachable_s: float = 30.0,
        where: str = "",
    ) -> None:
        self._config = {"logger": _driver_log, **config}
        self._config.setdefault("error_cb", self._on_error)
        self.topics = list(topics)
        self.commit_timeout_s = commit_timeout_s
        self.unreachable_s = unreachable_s
        self.where = where or str(config.get("bootstrap.servers", ""))
        self._consumer: _KConsumer | None = None
        self._unconfirmed: dict[tuple[str, int], int] = {}  # committed in the background
        self._assignment_known = False  # an assignment (maybe empty) since the last revocation
        self._away_since: float | None = None  # since when no broker has answered, as far as we know
        self._last_error = ""
        self._lasting: str | None = None  # an error waiting cannot cure (credentials, TLS)

    def _on_error(self, error: KafkaError) -> None:
        # A broker away (transport errors, all brokers down) is expected and ridden out, for a while.
        if error.code() in UNREACHABLE:
            if self._away_since is None:
                self._away_since = time.monotonic()
            self._last_error = error.str()
        if lasting(error):  # raised by the next poll
            self._lasting = error.str()
            return
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("kafka: no broker at %s answers; waiting up to %g s", self.where, self.unreachable_s)
            return
        log.log(logging.INFO if retriable(error) else logging.WARNING, "kafka consumer: %s", error)

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._assignment_known = True
        self._away_since = None  # the group coordinator answered
        log.info("kafka: assigned %d partitions of %s", len(partitions), ", ".join(self.topics))

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._assignment_known = False

    def _client(self) -> _KConsumer:
        if self._consumer is None:
            try:
                consumer = _KConsumer(self._config)
                consumer.subscribe(
                    self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
                )
            except (KafkaException, ValueError, TypeError) as exc:
                raise _bus_error("creating a consumer", exc) from exc
            self._consumer = consumer
            self._away_since = time.monotonic()  # not in touch until the group assigns or a probe answers
        return self._consumer

    def _check_reachable(self, client: _KConsumer) -> None:
        """After `unreachable_s` without a sign of the broker, ask it once; no answer is the end."""
        if self._away_since is None or time.monotonic() - self._away_since < self.unreachable_s:
            return
        try:
            client.list_topics(self.topics[0] if self.topics else None, timeout=2)
        except (KafkaException, RuntimeError) as exc:
            reason = self._last_error or str(exc)
            raise BusError(
                f"kafka consume failed: cannot reach Kafka at {self.where} "
                f"for {self.unreachable_s:g} s: {reason}",
                retriable=False,
            ) from exc
        self._away_since = None if self._assignment_known else time.monotonic()

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
            if self._lasting is not None:
                raise BusError(f"kafka consume failed: {self._lasting}", retriable=False)
            if not raw:
                self._check_reachable(client)
        except (KafkaException, RuntimeError) as exc:
            raise _bus_error("consume", exc) from exc
        out: list[Message] = []
        append = out.append
        new = tuple.__new__  # Message's own __new__ with its argument parsing, skipped: the hot path
        for m in raw:
            error = m.error()
            if error is not None:
                if error.code() in IGNORED or retriable(error):
                    log.debug("kafka consumer: %s", error)
                    continue
                raise BusError(f"kafka consume failed: {error}", retriable=False)
            try:
                headers = m.headers()
            except UnicodeDecodeError:  # a header name that is not UTF-8 (another client wrote it)
                headers = [("undecodable-header-names", b"")]
            append(
                new(
                    Message,
                    (
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        tuple(headers) if headers else (),
                        m.timestamp()[1],
                    ),
                )
            )
        if out:
            self._away_since = None
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
                error = error_of(exc)
                if error is None or not retriable(error) or time.monotonic() > deadline:
                    raise _bus_error("commit", exc) from exc
                log.info("kafka commit will be retried: %s", error)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
            except RuntimeError as exc:
                raise _bus_error("commit", exc) from exc

    def assigned(self) -> bool:
        return self._consumer is not None and self._assignment_known

    def caught_up(self) -> bool:
        """Assigned (a rebalance under way is not idle) and nothing after this consumer's position
        in any assigned partition, the end offsets read now; or none of its topics exists yet. A
        bus that does not answer is not caught up (poll reports it as unreachable in time)."""
        if not self.assigned():
            return self._consumer is not None and not self._topics_exist()
        try:
            return self.lag() == 0
        except BusError as exc:
            log.info("kafka: cannot tell whether the consumer is caught up: %s", exc)
            return False

    def _topics_exist(self) -> bool:
        """Whether any subscribed topic exists: a group never assigns a topic that does not (nothing
        has been published yet), and that is nothing to wait for. Unknown (no answer): True."""
        assert self._consumer is not None
        try:
            known = self._consumer.list_topics(timeout=2).topics
        except (KafkaException, RuntimeError) as exc:
            log.info("kafka: cannot list topics: %s", exc)
            return True
        return any(name in known and known[name].error is None for name in self.topics)

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
            self._assignment_known = False
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                raise _bus_error("close", exc) from exc
