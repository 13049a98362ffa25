"""Signing of webhook deliveries (Standard Webhooks v1): each API key's `whsec_` secret, its rotation (the old
secret keeps signing beside the new one for a while), and the `webhook-signature` header."""

from __future__ import annotations

import base64
import secrets as random_secrets
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from models.tables import ApiKey

#: After a rotation, the old secret signs beside the new one for this long.
ROTATION_OVERLAP = timedelta(hours=24)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(random_secrets.token_bytes(32)).decode("ascii")


def signing_secrets(key: ApiKey, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the key's own, and the previous one during its overlap."""
    secrets = [key.webhook_secret]
    if key.previous_webhook_secret and key.previous_secret_expires_at and key.previous_secret_expires_at > now:
        secrets.append(key.previous_webhook_secret)
    return secrets


def signatures(secrets: list[str], event_id: str, timestamp: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret, space-separated, as receivers' `verify` expects."""
    return " ".join(Webhook(secret).sign(event_id, timestamp, body) for secret in secrets)


def rotate_secret(session: Session, api_key_id: str, now: datetime) -> tuple[str, datetime]:
    """Gives the key a new secret; the old one signs beside it until the returned time. The caller commits."""
    key = session.get_one(ApiKey, api_key_id)  # read in the writing transaction: rotations take turns
    secret, expires = new_webhook_secret(), now + ROTATION_OVERLAP
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(
        webhook_secret=secret, previous_webhook_secret=key.webhook_secret, previous_secret_expires_at=expires))
    return secret, expires
