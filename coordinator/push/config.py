"""The push's settings: defined with the other job kinds' settings (coordinator/kinds), so that
loading a spec does not import the push engine; named here for the push's own modules."""

from coordinator.kinds.reverse_etl import DestinationSettings, Mode, PushSettings, SourceSettings

__all__ = ["DestinationSettings", "Mode", "PushSettings", "SourceSettings"]
