"""The one clock: every timestamp distilq writes is aware UTC from here."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    """RFC 3339 with a `Z`, milliseconds kept: `2026-11-23T19:30:00.123Z`."""
    if value is None:
        return None
    return _isoformat(value)


@functools.lru_cache(maxsize=4096)
def _isoformat(value: datetime) -> str:
    # Cached: the lines of a batch's output file share their times (a check's chunk is created at one instant, a
    # pass claimed and written back at one each), and equal instants write the same text whatever their zone.
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix_seconds(value: datetime | None) -> int | None:
    """Whole seconds since the epoch, as the OpenAI-shaped objects (files, batches, evaluations) show times."""
    return int(value.timestamp()) if value is not None else None
