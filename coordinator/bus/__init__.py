"""Event bus: interface in base.py, adapters beside it (kafka.py, local.py)."""

from coordinator.bus.base import Bus, Consumer, Message, Producer, TopicSpec

__all__ = ["Bus", "Consumer", "Message", "Producer", "TopicSpec"]
