"""Signatures are made with the standardwebhooks library and accepted by its `verify`, which receivers run."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from core.clock import utcnow
from webhooks.signing import new_webhook_secret, signatures


def test_both_secrets_of_a_rotation_verify() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    now = utcnow()
    body = '{"type":"job.completed","data":{"id":"j1"}}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signatures([new, old], "msg_1", now, body)}
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "job.completed", "data": {"id": "j1"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("j1", "j2"), headers)
