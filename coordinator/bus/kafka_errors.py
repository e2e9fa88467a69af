"""Kafka's errors in the project's terms: which confluent-kafka errors are worth retrying.

`retriable(error)` is librdkafka's own classification (`KafkaError.retriable()`, `fatal()`)
completed by two lists of codes: those that only say "not now" (a broker away or slow, a group
rebalancing, a leader moving) and those that fail the same way every time (configuration,
credentials, a message the broker will never take, a fenced member), whatever the flag says.
`bus_error` turns any driver exception into BusError with that answer in `retriable`; the
adapter (bus/kafka.py) raises nothing else.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

from coordinator.errors import BusError


class DriverLog:
    """Where librdkafka's own log lines go (Python logging, not stderr). Its FAIL lines (a
    connection refused or dropped, repeated at every reconnect while a broker is away) are
    demoted to INFO: the adapter says it once, plainly — a warning when no broker answers, and
    one error once that has lasted `unreachable_s`."""

    logger = logging.getLogger("coordinator.bus.kafka.librdkafka")

    def log(self, level: int, msg: str, *args: object) -> None:
        if level >= logging.WARNING and args and args[0] == "FAIL":
            level = logging.INFO
        self.logger.log(level, msg, *args)


# Errors that only say "not now" (a broker away or slow, a group rebalancing, a leader moving):
# the operation is retried, and fails for good only once the bus has been away too long.
RETRIABLE_CODES = frozenset({
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError._TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._QUEUE_FULL,
    KafkaError._WAIT_COORD,
    KafkaError._IN_PROGRESS,
    KafkaError._PREV_IN_PROGRESS,
    KafkaError._NO_OFFSET,
    KafkaError._STATE,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._NODE_UPDATE,
    KafkaError._RETRY,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.OFFSET_NOT_AVAILABLE,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.KAFKA_STORAGE_ERROR,
    KafkaError.UNSTABLE_OFFSET_COMMIT,
    KafkaError.UNKNOWN_TOPIC_OR_PART,  # a topic being created (auto-creation, ensure_topics elsewhere)
})
# Errors that fail the same way every time, whatever librdkafka's retriable flag says: the
# configuration, the credentials, a message the broker will never take, a fenced member.
FATAL_CODES = frozenset({
    KafkaError._FATAL,
    KafkaError._INVALID_ARG,
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError._DESTROY,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._NOT_IMPLEMENTED,
    KafkaError._UNSUPPORTED_FEATURE,
    KafkaError._CRIT_SYS_RESOURCE,
    KafkaError._FS,
    KafkaError._INCONSISTENT,
    KafkaError._MAX_POLL_EXCEEDED,
    KafkaError._KEY_SERIALIZATION,
    KafkaError._VALUE_SERIALIZATION,
    KafkaError._BAD_MSG,
    KafkaError._BAD_COMPRESSION,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_CONFIG,
    KafkaError.INVALID_REQUIRED_ACKS,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.UNSUPPORTED_VERSION,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError.UNKNOWN_PRODUCER_ID,
})
# Message-level errors a consumer passes over: end of partition, a topic not created yet.
IGNORED = {KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART}
# What error_cb reports when no broker answers
UNREACHABLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}


# What error_cb reports about the connection that waiting will not cure: the credentials or the
# TLS set-up are wrong. The client stops at once with it instead of after `unreachable_s`.
NO_ENTRY = {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED,
            KafkaError._FATAL, KafkaError._INVALID_ARG}


def lasting(error: KafkaError) -> bool:
    """Whether an error reported by error_cb means the client cannot work until reconfigured."""
    return error.fatal() or error.code() in NO_ENTRY


def retriable(error: KafkaError) -> bool:
    """Whether the operation that failed with `error` may succeed if tried again."""
    if error.fatal() or error.code() in FATAL_CODES:
        return False
    return error.code() in RETRIABLE_CODES or error.retriable()


def error_of(exc: BaseException) -> KafkaError | None:
    arg = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return arg if isinstance(arg, KafkaError) else None


def bus_error(action: str, exc: BaseException) -> BusError:
    """A driver exception as BusError; configuration mistakes (ValueError, TypeError) never pass."""
    error = error_of(exc)
    ok = retriable(error) if error is not None else isinstance(exc, KafkaException | RuntimeError)
    if error is not None and error.code() == KafkaError.FENCED_INSTANCE_ID:
        return BusError(
            f"kafka {action} failed: another live consumer of this group has the same instance name "
            f"(COORD_INSTANCE_NAME must differ per instance): {exc}",
            retriable=False,
        )
    return BusError(f"kafka {action} failed: {exc}", retriable=ok)
