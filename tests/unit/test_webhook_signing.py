"""The Standard Webhooks headers (crm/webhooks/signing.py) are the spec's library's: the
golden vector of the spec reproduces, standardwebhooks.Webhook.verify accepts them, and
during a rotation's overlap either secret verifies the same delivery."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import standardwebhooks
from standardwebhooks import Webhook, WebhookVerificationError

from crm.webhooks import endpoints, signing
from tests.fakes import FIXTURES

VECTOR = json.loads((FIXTURES / "webhooks" / "standard_webhooks_vector.json").read_text())


def _at(epoch: str) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def test_the_golden_vector_reproduces():
    got = signing.headers([VECTOR["secret"]], VECTOR["webhook-id"], _at(VECTOR["webhook-timestamp"]),
                          VECTOR["payload"])
    assert got == {"webhook-id": VECTOR["webhook-id"], "webhook-timestamp": VECTOR["webhook-timestamp"],
                   "webhook-signature": VECTOR["webhook-signature"], "content-type": "application/json"}


def test_the_library_verifies_the_vector_and_refuses_the_near_miss(monkeypatch):
    """verify() checks the timestamp against now (5 minutes): now is the vector's time."""
    fixed = _at(VECTOR["webhook-timestamp"])

    class Then(datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", Then)
    hook = Webhook(VECTOR["secret"])
    headers = signing.headers([VECTOR["secret"]], VECTOR["webhook-id"], fixed, VECTOR["payload"])
    assert hook.verify(VECTOR["payload"], headers) == {"test": 2432232314}
    forged = {**headers, "webhook-signature": VECTOR["invalid_signature_same_prefix"]}
    with pytest.raises(WebhookVerificationError):
        hook.verify(VECTOR["payload"], forged)


def test_a_fresh_delivery_verifies_and_a_changed_body_does_not():
    secret = endpoints.new_secret()
    body = '{"type":"order.paid","data":{"order_id":"ord_1"}}'
    headers = signing.headers([secret], "msg_1", datetime.now(UTC), body)
    assert Webhook(secret).verify(body, headers)["type"] == "order.paid"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("ord_1", "ord_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoints.new_secret()).verify(body, headers)


def test_during_an_overlap_both_secrets_verify_one_delivery():
    new, old = endpoints.new_secret(), endpoints.new_secret()
    body = '{"type":"webhook.ping"}'
    headers = signing.headers([new, old], "msg_2", datetime.now(UTC), body)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {"type": "webhook.ping"}
    assert len(signing.headers([new, new], "m", datetime.now(UTC), body)["webhook-signature"].split(" ")) == 1


def test_a_time_in_another_zone_is_converted_not_relabelled():
    """The library replaces the zone of the time it is given; the header must be the instant."""
    secret = endpoints.new_secret()
    utc = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert signing.headers([secret], "m", paris, "{}") == signing.headers([secret], "m", utc, "{}")
    assert signing.headers([secret], "m", utc, "{}")["webhook-timestamp"] == str(int(utc.timestamp()))
    with pytest.raises(ValueError):
        signing.headers([], "m", utc, "{}")


def test_a_secret_is_whsec_and_24_random_bytes():
    import base64

    secret = endpoints.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    assert secret != endpoints.new_secret()
