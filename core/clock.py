"""The one clock: every timestamp distilq writes is aware UTC from here."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    """RFC 3339 with a `Z`, milliseconds kept: `2026-11-23T19:30:00.123Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix_seconds(value: datetime | None) -> int | None:
    """Whole seconds since the epoch, as the OpenAI-shaped objects (files, batches, evaluations) show times."""
    return int(value.timestamp()) if value is not None else None
