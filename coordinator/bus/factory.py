"""Build the bus the settings ask for, and the coordinator's topic definitions (topics/topics.yaml).

The one place where `settings.bus` is looked at: everything else receives a `Bus`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from coordinator.bus.base import Bus, TopicSpec
from coordinator.codec import topics_dir
from coordinator.errors import SettingsError

if TYPE_CHECKING:
    from coordinator.settings import Settings


def open_bus(settings: Settings) -> Bus:
    """The Kafka bus or the embedded local log (settings.home / "bus.db"); nothing connects yet."""
    if settings.bus == "local":
        from coordinator.bus.local import LocalBus

        return LocalBus(settings.home / "bus.db")
    if settings.bus == "kafka":
        from coordinator.bus.kafka import KafkaBus
        from coordinator.bus.kafka_memory import cap_malloc_arenas

        cap_malloc_arenas(settings.malloc_arena_max)  # before librdkafka's threads (see there)
        return KafkaBus(
            settings.kafka_bootstrap_servers,
            settings.kafka_security_config(),
            unreachable_s=settings.bus_unreachable_s,
        )
    raise SettingsError(f"unknown bus {settings.bus!r}: expected 'local' or 'kafka'")


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics of topics/topics.yaml, named as the settings say (COORD_TOPIC_EVENTS, ...)."""
    path = topics_dir() / "topics.yaml"
    names = {"events": settings.topic_events, "dead_letter": settings.topic_dead_letter}
    try:
        entries = yaml.safe_load(path.read_text())["topics"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SettingsError(f"cannot read topic definitions {path}: {exc}") from exc
    specs = []
    for entry in entries:
        name = names.get(entry.get("role"), entry["name"])
        specs.append(
            TopicSpec(name=name, partitions=int(entry["partitions"]), retention_ms=int(entry["retention_ms"]))
        )
    return specs
