"""IANA time-zone names in specs and settings: checked in one place, with one message."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


def check_zone(name: str) -> str:
    """`name` itself when zoneinfo knows it; ValueError (a validation error) when not."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (like UTC or Europe/Berlin)") from None
    return name


ZoneName = Annotated[str, AfterValidator(check_zone)]
