"""When an event is sent: at once, then after each of `DISTILQ_WEBHOOK_RETRY_DELAYS` (± 20 % jitter) until one
attempt delivers; and which events are due for `beat` to put on the queue."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from models.db import transaction
from models.tables import PENDING, WebhookEvent

#: Each retry waits its delay times a factor drawn from this range, so that receivers back up unevenly.
JITTER = (0.8, 1.2)
#: A due event still undelivered this long after it was put on the queue is put there again (the message was lost).
REPUBLISH_AFTER = timedelta(seconds=30)
#: How long past its timeout an attempt holds its event before the event counts as due again, in seconds.
LOCK_MARGIN_S = 30


def next_attempt_at(attempt: int, delays_s: list[float], now: datetime) -> datetime | None:
    """When to try again after failed attempt number `attempt` (1-based); None once the delays are spent."""
    if attempt > len(delays_s):
        return None
    return now + timedelta(seconds=delays_s[attempt - 1] * random.uniform(*JITTER))


def due_events(session: Session, now: datetime, limit: int) -> list[str]:
    """Pending events due now, not being sent, and not put on the queue lately."""
    return list(session.scalars(
        select(WebhookEvent.id)
        .where(WebhookEvent.status == PENDING, WebhookEvent.next_attempt_at <= now,
               or_(WebhookEvent.locked_until.is_(None), WebhookEvent.locked_until < now),
               or_(WebhookEvent.published_at.is_(None), WebhookEvent.published_at < now - REPUBLISH_AFTER))
        .order_by(WebhookEvent.next_attempt_at)
        .limit(limit)
    ))


def take_due_events(sessions: sessionmaker[Session], now: datetime, limit: int) -> list[str]:
    """The due events (`due_events`), marked as put on the queue now; the caller puts them there."""
    with transaction(sessions) as session:
        due = due_events(session, now, limit)
        if due:
            session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(due)).values(published_at=now))
    return due
