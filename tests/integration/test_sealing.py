"""Secret config fields sealed with KMS ``Encrypt`` (no data key, no crypto library in
the zip): bound to their tenant and connection, never stored in plain text, and refused
with a 422 naming the field when they exceed what one ``Encrypt`` takes."""
from __future__ import annotations

import json

import pytest

from tests.fakes.acme import AcmeServer


@pytest.fixture()
def acme():
    with AcmeServer() as server:
        yield server


def test_a_sealed_blob_opens_only_for_its_tenant_and_connection(dev_stack):
    from connectors import sealing

    secrets = {"api_token": "tok-secret-1234", "webhook_secret": "hook-secret-5678"}
    sealed = sealing.seal("t0000000000aa", "con_A", secrets)
    stored = json.dumps(sealed)
    assert "tok-secret-1234" not in stored and "hook-secret-5678" not in stored
    assert sealing.unseal("t0000000000aa", "con_A", sealed) == secrets
    with pytest.raises(Exception):  # copied to another tenant's connection of the same id
        sealing.unseal("t0000000000bb", "con_A", sealed)
    with pytest.raises(Exception):  # or to another connection of the same tenant
        sealing.unseal("t0000000000aa", "con_B", sealed)
    assert sealing.unseal("t0000000000aa", "con_A", {}) == {}


def test_secrets_beyond_what_kms_encrypts_are_refused_naming_the_field(tenant, acme, monkeypatch):
    from connectors import sealing

    monkeypatch.setattr(sealing, "MAX_PLAINTEXT_BYTES", 64)  # KMS takes 4096; the rule, smaller
    token = "t" * 80
    r = tenant.http.post("/v1/connections", json={
        "connector": "acme", "name": "Acme", "config": {"base_url": acme.url, "api_token": token}})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == "config.api_token" and body["code"] == "validation_error"
    assert token not in r.text
    assert tenant.http.get("/v1/connections").json()["data"] == []  # nothing was created

    # a token that fits is accepted
    r = tenant.http.post("/v1/connections", json={
        "connector": "acme", "name": "Acme", "config": {"base_url": acme.url, "api_token": "t" * 20}})
    assert r.status_code == 201, r.text


def test_the_limit_is_what_one_kms_encrypt_takes():
    from connectors import sealing

    assert sealing.MAX_PLAINTEXT_BYTES == 4096
