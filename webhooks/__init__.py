"""Webhooks, one feature in one package: the outbox (events recorded with the status change that causes them),
where a webhook may be sent (the SSRF guard), signing, the retry schedule, the sender and the delivery log.

Its public face, for the store, the API, the worker and `beat`:
- `record_event` / `record_batch_event` / `record_evaluation_event` (outbox) inside a status change's transaction;
- `check_target` / `UnsafeTarget` / `LookupFailed` to judge a URL at submission;
- `WebhookSender.deliver` for one attempt; `take_due_events` for `beat`;
- `job_deliveries` / `retry_now` and `rotate_secret` for the API's routes; `new_webhook_secret` for new keys;
- `delete_events` for `beat`'s retention (`store/retention.py`).
"""

from __future__ import annotations

from webhooks.deliveries import delete_events, job_deliveries, retry_now
from webhooks.outbox import record_batch_event, record_evaluation_event, record_event
from webhooks.schedule import take_due_events
from webhooks.sender import WebhookSender
from webhooks.signing import new_webhook_secret, rotate_secret
from webhooks.targets import LookupFailed, UnsafeTarget, check_target

__all__ = ["LookupFailed", "UnsafeTarget", "WebhookSender", "check_target", "delete_events", "job_deliveries",
           "new_webhook_secret", "record_batch_event", "record_evaluation_event", "record_event", "retry_now",
           "rotate_secret", "take_due_events"]
