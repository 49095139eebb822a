"""Settings read from the environment (the same names locally and on Lambda)."""

from __future__ import annotations

import os


def table_name() -> str:
    return os.environ.get("RAPPORT_TABLE", "rapport")


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def key_cache_seconds() -> float:
    """How long a Lambda container may trust a cached API-key lookup (at most 60 s)."""
    return max(0.0, min(60.0, float(os.environ.get("RAPPORT_KEY_CACHE_SECONDS", "60"))))


def public_url() -> str:
    """The API's public base URL (no trailing slash), for links in emails (unsubscribe).
    Set by the deployment (the API Gateway stage's URL or a custom domain) and by the
    local stack (http://127.0.0.1:<port>)."""
    url = os.environ.get("RAPPORT_PUBLIC_URL")
    if not url:
        raise RuntimeError("RAPPORT_PUBLIC_URL is not set: emails cannot link back to the API")
    return url.rstrip("/")


def email_link_secret() -> bytes:
    """The key that signs unsubscribe links (crm/email/links.py)."""
    secret = os.environ.get("RAPPORT_EMAIL_LINK_SECRET")
    if not secret:
        raise RuntimeError("RAPPORT_EMAIL_LINK_SECRET is not set: unsubscribe links cannot be signed")
    return secret.encode()


def ses_configuration_set() -> str:
    """The SES configuration set every email is sent with: its event destination
    publishes sends, deliveries, bounces, complaints, opens and clicks to EventBridge."""
    return os.environ.get("RAPPORT_SES_CONFIGURATION_SET", "rapport")


def dev_sender_domain() -> str | None:
    """Locally only (``rapport dev``, the tests): each new tenant gets the sender
    ``hello@<tenant id>.<this domain>`` already verified in the emulator's SES."""
    return os.environ.get("RAPPORT_DEV_SENDER_DOMAIN") or None
