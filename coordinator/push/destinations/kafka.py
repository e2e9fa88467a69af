"""A Kafka topic as a push destination: one record per changed row, keyed by the primary key.

Atomic like the databases: the records of one push are produced in one Kafka transaction
(transactional.id fixed per job and topic, so a restarted push fences its predecessor), and
read_committed consumers see all of them or none. Keys are the key value as text (one key
column) or a JSON array (several); values are JSON objects, or Avro in the Avro spec's
single-object encoding (0xC3 0x01, the schema's CRC-64-AVRO fingerprint, the body). Mirror
deletes are tombstones (null values). A topic has no table to describe and no marker row: the
diff trusts the local state file alone, and a full mirror push cannot delete unseen keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
from collections.abc import Iterator

import confluent_kafka.error as kafka_errors
import fastavro
import pyarrow as pa
from confluent_kafka import KafkaException, Producer

from coordinator.errors import PushError, PushOutcomeUnknown
from coordinator.identifiers import kafka_topic
from coordinator.push.config import DestinationSettings
from coordinator.push.destinations import failure
from coordinator.push.destinations.base import Applied, Destination, Marker
from coordinator.push.destinations.failure import BY_STATE, REFUSED
from coordinator.push.plan import Plan
from coordinator.push.schema import DestTable, arrow_family

BATCH_ROWS = 20_000
COMMIT_SECONDS = 120
# the client's KafkaError inside a KafkaException says retriable / abortable / fatal
KAFKA_VERDICTS: failure.Verdicts = {
    KafkaException: BY_STATE,
    kafka_errors.ProduceError: BY_STATE,
    kafka_errors.ConsumeError: BY_STATE,
    kafka_errors.SerializationError: REFUSED,
    kafka_errors.KeySerializationError: REFUSED,
    kafka_errors.ValueSerializationError: REFUSED,
    kafka_errors.KeyDeserializationError: REFUSED,
    kafka_errors.ValueDeserializationError: REFUSED,
}
AGAIN = (
    "the topic has no marker, so the next push sends these records again "
    "(keyed: a compacted topic or an upserting reader keeps one per key)"
)


def commit_outcome(exc: KafkaException) -> str:
    """What a failed commit_transaction leaves (the translator of confluent-kafka errors at
    COMMIT): "retry" (the client may call commit again), "aborted" (the transaction must be and
    can be aborted: nothing is visible) or "unknown" (fatal, or retries ran out)."""
    err = exc.args[0] if exc.args else None
    if failure.verdict(exc, KAFKA_VERDICTS) == REFUSED or not hasattr(err, "retriable"):
        return "aborted"
    if err.txn_requires_abort():
        return "aborted"
    if err.retriable() and not err.fatal():
        return "retry"
    return "unknown"


def avro_type(t: pa.DataType) -> object:
    fam = arrow_family(t)
    if fam == "decimal":
        return {"type": "bytes", "logicalType": "decimal", "precision": t.precision, "scale": t.scale}
    if fam == "timestamp":
        return {"type": "long", "logicalType": "timestamp-micros"}
    return {
        "int": "long",
        "float": "double",
        "string": "string",
        "bool": "boolean",
        "bytes": "bytes",
        "date": {"type": "int", "logicalType": "date"},
        "time": {"type": "long", "logicalType": "time-micros"},
    }.get(fam, "string")


def avro_schema(name: str, schema: pa.Schema) -> dict:
    safe = "".join(ch if ch.isalnum() else "_" for ch in name) or "row"
    return {
        "type": "record",
        "name": safe if not safe[0].isdigit() else f"r_{safe}",
        "fields": [{"name": f.name, "type": ["null", avro_type(f.type)], "default": None} for f in schema],
    }


class KafkaDestination(Destination):
    keeps_marker = False
    needs_unique_key = False

    def __init__(self, config: DestinationSettings, bootstrap: str | None = None) -> None:
        self.topic, servers = kafka_topic(config.url)
        self.bootstrap = config.bootstrap_servers or servers or bootstrap
        if not self.topic or not self.bootstrap:
            raise PushError(f"kafka destination needs a topic and bootstrap servers (url {config.url!r})")
        self.format = config.format
        self.nan_ok = self.format == "avro"  # JSON has no NaN or infinity: such rows are rejected
        self.dialect = "avro" if self.format == "avro" else ""  # field names: Avro's rules, JSON's none
        self.identity = f"kafka://{self.bootstrap}/{self.topic}"
        self._producer: Producer | None = None

    def describe(self) -> DestTable | None:
        return None

    def current(self, job: str) -> tuple[Marker | None, int]:
        return None, 0

    def _connect(self, job: str) -> Producer:
        if self._producer is None:
            txn = hashlib.sha256(f"{job}\0{self.identity}".encode()).hexdigest()[:24]
            try:
                self._producer = Producer(
                    {
                        "bootstrap.servers": self.bootstrap,
                        "transactional.id": f"coord-push-{txn}",
                        "enable.idempotence": True,
                        "linger.ms": 20,
                        "compression.type": "lz4",
                    }
                )
                self._producer.init_transactions(30)
            except KafkaException as exc:
                self._producer = None
                raise PushError(f"cannot start a Kafka transaction on {self.identity}: {exc}") from exc
        return self._producer

    def apply(self, plan: Plan, job: str, marker: Marker) -> Applied:
        producer = self._connect(job)
        errors: list[str] = []

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        headers = [("coord.push_id", marker.push_id.encode())]
        try:
            producer.begin_transaction()
            for sent, (key, value) in enumerate(self._records(plan), 1):
                while True:
                    try:
                        producer.produce(
                            self.topic, key=key, value=value, headers=headers, on_delivery=delivered
                        )
                        break
                    except BufferError:  # queue full: let deliveries drain
                        producer.poll(0.5)
                if sent % 10_000 == 0:
                    producer.poll(0)
            producer.flush(COMMIT_SECONDS)
            if errors:
                raise PushError(f"{len(errors)} records failed: {errors[0]}")
        except (KafkaException, PushError, ValueError, TypeError, OverflowError) as exc:
            # ValueError/TypeError/OverflowError: a value the encoder cannot write (fastavro, json)
            self._abort(producer)
            raise PushError(
                f"push into topic {self.topic} failed and was aborted: {failure.one_line(exc)}"
            ) from exc
        self._commit(producer, marker.push_id)
        deletes = plan.deletes.num_rows if plan.deletes is not None else 0
        n = plan.rows.num_rows
        if plan.full:
            return Applied(inserted=n, deleted=deletes)
        return Applied(inserted=plan.new_keys or 0, updated=n - (plan.new_keys or 0), deleted=deletes)

    def _abort(self, producer: Producer) -> None:
        with contextlib.suppress(KafkaException):  # the transaction times out on the broker anyway
            producer.abort_transaction(30)

    def _commit(self, producer: Producer, push_id: str) -> None:
        """commit_transaction, again while the client says it may be retried (a timeout, a
        coordinator moving), until COMMIT_SECONDS have passed."""
        deadline = time.monotonic() + COMMIT_SECONDS
        while True:
            try:
                producer.commit_transaction(max(1.0, deadline - time.monotonic()))
                return
            except KafkaException as exc:
                outcome = commit_outcome(exc)
                if outcome == "retry" and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                if outcome == "aborted":
                    self._abort(producer)
                    raise PushError(
                        f"push into topic {self.topic} was refused at commit and aborted: "
                        f"{failure.one_line(exc)}"
                    ) from exc
                self._producer = None  # a fatal producer is of no further use
                raise PushOutcomeUnknown(
                    f"topic {self.topic}", push_id, failure.one_line(exc), AGAIN
                ) from exc

    def _records(self, plan: Plan) -> Iterator[tuple[bytes, bytes | None]]:
        key = list(plan.key)
        encode = self._avro_encoder(plan.rows.schema) if self.format == "avro" else _json_value
        for batch in plan.rows.to_batches(max_chunksize=BATCH_ROWS):
            for row in batch.to_pylist():
                yield _key(row, key), encode(row)
        if plan.deletes is not None:
            for row in plan.deletes.to_pylist():
                yield _key(row, key), None

    def _avro_encoder(self, schema: pa.Schema):
        parsed = fastavro.parse_schema(avro_schema(self.topic, schema))
        canonical = fastavro.schema.to_parsing_canonical_form(parsed)
        # fastavro gives the fingerprint's little-endian bytes in hex, the order the spec writes
        prefix = b"\xc3\x01" + bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))

        def encode(row: dict) -> bytes:
            buf = io.BytesIO()
            buf.write(prefix)
            fastavro.schemaless_writer(buf, parsed, row)
            return buf.getvalue()

        return encode

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(30)
            self._producer = None


def _key(row: dict, key: list[str]) -> bytes:
    if len(key) == 1:
        return str(row[key[0]]).encode()
    return json.dumps([row[k] for k in key], default=str).encode()


def _json_value(row: dict) -> bytes:
    return json.dumps(row, default=str, allow_nan=False).encode()
