"""Checking an incoming webhook: distilq signs every delivery with Standard Webhooks (HMAC-SHA256 over
`webhook-id.webhook-timestamp.body`, keyed with your key's `whsec_…` secret from GET /v1/webhooks/secret)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook

from distilq_client.errors import DistilqError


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> dict[str, Any]:
    """The event (`{"type", "timestamp", "data"}`) of a delivery whose signature and timestamp (within 5 minutes)
    hold; raises DistilqError (`invalid_signature`) otherwise. Pass the body exactly as received."""
    try:
        event = Webhook(secret).verify(body, {key.lower(): value for key, value in headers.items()})
    except Exception as error:  # standardwebhooks raises its own WebhookVerificationError
        raise DistilqError(401, "invalid_signature", f"the webhook's signature does not hold: {error}") from None
    return dict(event)
