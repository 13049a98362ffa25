"""Delivers webhook events (Standard Webhooks v1) and keeps the delivery log.

An attempt claims its event by compare-and-set (so duplicated messages send once), signs the stored body with
the key's secret (and the previous one during a rotation), connects only to an address the SSRF guard checked
(no second DNS lookup to rebind), follows no redirect, reads only the answer's status and ends at its deadline
(`post`), and records the outcome. Any 2xx delivers; 410 stops; anything else is retried on the schedule of
`webhooks/schedule.py`, kept in the database for `beat` to send.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import urllib3
import urllib3.connection
from sqlalchemy import or_, update
from sqlalchemy.orm import Session, sessionmaker

from core.metrics import WEBHOOK_ATTEMPTS
from core.settings import Settings
from models.db import rowcount, transaction
from models.tables import DELIVERED, FAILED, GONE, PENDING, ApiKey, WebhookAttempt, WebhookEvent
from webhooks.schedule import LOCK_MARGIN_S, next_attempt_at
from webhooks.signing import signatures, signing_secrets
from webhooks.targets import LookupFailed, Target, UnsafeTarget, check_target

log = logging.getLogger(__name__)

USER_AGENT = "distilq-webhooks/1"


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt got: the receiver's status code, or why there was none."""

    status: int | None
    error: str | None


def post(target: Target, headers: dict[str, str], body: str, timeout_s: float) -> DeliveryResult:
    """One POST to the first checked address, with the URL's host for Host and TLS; no redirect, no retry. The
    attempt ends within `timeout_s` whatever the receiver does: a socket's timeout bounds each read only, and a
    receiver sending its answer a byte at a time held an attempt of 1 s for 18 (past its event's lock, when another
    attempt may start), so the connection is cut at the deadline. Only the status is read — never the receiver's
    body (a 300 MB one was read whole into the sender's memory)."""
    address = target.addresses[0]
    connect_s = min(timeout_s, 5.0)
    connection: urllib3.connection.HTTPConnection
    if target.scheme == "https":
        connection = urllib3.connection.HTTPSConnection(address, target.port, timeout=connect_s,
                                                        server_hostname=target.host, assert_hostname=target.host,
                                                        cert_reqs="CERT_REQUIRED")
    else:
        connection = urllib3.connection.HTTPConnection(address, target.port, timeout=connect_s)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    deadline = _Deadline(connection, timeout_s)
    try:
        connection.connect()
        deadline.check()
        connection.timeout = timeout_s  # each read's, set on the socket as the answer is read; the deadline the whole's
        connection.request("POST", target.path, body=body.encode("utf-8"),
                           headers={**headers, "Host": host_header}, preload_content=False)
        return DeliveryResult(connection.getresponse().status, None)
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as error:
        if deadline.passed:
            return DeliveryResult(None, f"timed out after {timeout_s:g} s")
        return DeliveryResult(None, f"{error.__class__.__name__}: {error}")
    finally:
        deadline.cancel()
        connection.close()


class _Deadline:
    """Cuts `connection`'s socket `seconds` from now (a read blocked on it then ends), from a timer's thread."""

    def __init__(self, connection: urllib3.connection.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.passed = False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        self.passed = True
        sock = self.connection.sock  # None while the TCP connection is made: that is bounded by its own timeout
        if sock is not None:
            try:  # the plain socket's shutdown, under TLS too: it unblocks a read in the other thread
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # closed already

    def check(self) -> None:
        """Raises TimeoutError once the deadline has passed (the connection was made after it)."""
        if self.passed:
            raise TimeoutError("the deadline passed while connecting")

    def cancel(self) -> None:
        self._timer.cancel()


class WebhookSender:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings, clock: Callable[[], datetime],
                 send: Callable[[Target, dict[str, str], str, float], DeliveryResult] = post) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self.send = send

    def deliver(self, event_id: str) -> None:
        now = self.clock()
        timeout_s = self.settings.webhook_timeout_s
        with transaction(self.sessions) as session:
            claimed = rowcount(session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.status == PENDING,
                       WebhookEvent.next_attempt_at <= now,
                       or_(WebhookEvent.locked_until.is_(None), WebhookEvent.locked_until < now))
                .values(attempts=WebhookEvent.attempts + 1,
                        locked_until=now + timedelta(seconds=timeout_s + LOCK_MARGIN_S))
            ))
            if not claimed:
                return  # delivered, given up, not due, or being sent by another attempt
            event = session.get_one(WebhookEvent, event_id)
            secrets = signing_secrets(session.get_one(ApiKey, event.api_key_id), now)
            url, body, attempt = event.url, event.payload, event.attempts

        started = time.perf_counter()
        try:
            target = check_target(url, self.settings.webhook_allow_private)
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": event_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signatures(secrets, event_id, now, body),
            }
            response = self.send(target, headers, body, timeout_s)
        except UnsafeTarget as error:
            response = DeliveryResult(None, f"refused: the URL {error}")
        except LookupFailed as error:
            response = DeliveryResult(None, str(error))
        self._record(event_id, attempt, now, (time.perf_counter() - started) * 1000, response)

    def _record(self, event_id: str, attempt: int, started: datetime, duration_ms: float,
                response: DeliveryResult) -> None:
        status, next_attempt = PENDING, None
        if response.status is not None and 200 <= response.status < 300:
            status = DELIVERED
        elif response.status == 410:
            status = GONE  # the receiver asked to stop
        else:
            next_attempt = next_attempt_at(attempt, self.settings.webhook_retry_delays_s, self.clock())
            if next_attempt is None:
                status = FAILED
        with transaction(self.sessions) as session:
            session.add(WebhookAttempt(id=str(uuid.uuid4()), event_id=event_id, attempt=attempt, started_at=started,
                                       duration_ms=duration_ms, response_status=response.status,
                                       error=response.error))
            values: dict[str, object] = {"status": status, "locked_until": None}
            if status == DELIVERED:
                values["delivered_at"] = self.clock()
            if next_attempt is not None:
                values["next_attempt_at"] = next_attempt
                values["published_at"] = None
            session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(**values))
        refused = response.error is not None and response.error.startswith("refused")
        outcome = "refused" if refused else (status if status != PENDING else "retry")
        WEBHOOK_ATTEMPTS.labels(outcome).inc()
        log.info("webhook attempt", extra={"event_id": event_id, "attempt": attempt, "outcome": outcome,
                                           "response_status": response.status, "error": response.error,
                                           "duration_ms": round(duration_ms, 1)})

