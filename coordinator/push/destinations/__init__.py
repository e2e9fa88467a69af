"""Destination adapters, chosen by the URL's scheme."""

from __future__ import annotations

from coordinator.errors import PushError
from coordinator.push.config import DestinationSettings
from coordinator.push.destinations.base import Applied, Destination, Marker


def open_destination(config: DestinationSettings, kafka_bootstrap: str | None = None) -> Destination:
    try:
        return _open(config, kafka_bootstrap)
    except ValueError as exc:  # sqlalchemy's make_url: a port that is no number, a bad query string
        raise PushError(f"invalid destination URL: {' '.join(str(exc).split())}") from exc


def _open(config: DestinationSettings, kafka_bootstrap: str | None) -> Destination:
    scheme = config.scheme
    if scheme in ("postgresql", "postgres"):
        from coordinator.push.destinations.postgres import PostgresDestination

        return PostgresDestination(config)
    if scheme in ("mysql", "mariadb"):
        from coordinator.push.destinations.mysql import MySQLDestination

        return MySQLDestination(config)
    if scheme == "sqlite":
        from coordinator.push.destinations.sqlite import SQLiteDestination

        return SQLiteDestination(config)
    if scheme == "kafka":
        from coordinator.push.destinations.kafka import KafkaDestination

        return KafkaDestination(config, kafka_bootstrap)
    raise PushError(f"unsupported destination URL scheme {scheme!r} (postgresql, mysql, sqlite, kafka)")


__all__ = ["Applied", "Destination", "Marker", "open_destination"]
