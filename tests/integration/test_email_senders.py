"""Sender identities over HTTP (crm/email/senders.py): created in the emulator's SES
with the tenant's tag, listed, read (status refreshed from SES), deleted; a domain
another tenant holds is 409; ``verified()`` (what sending asks) for an address, its
domain, and an unknown one; the dev sender every tenant gets locally."""
from __future__ import annotations


def _ses():
    import boto3

    return boto3.client("sesv2")


def test_the_dev_sender_is_verified_and_the_default(tenant):
    from crm.email import senders

    dev = f"hello@{tenant.id}.example.test"
    listed = tenant.http.get("/v1/email/senders").json()["data"]
    assert [(s["identity"], s["type"], s["status"]) for s in listed] == [(dev, "address", "verified")]
    assert tenant.http.get("/v1/email/settings").json()["default_sender"] == dev
    assert senders.verified(tenant.ctx, dev) and senders.verified(tenant.ctx, dev.upper())
    assert _ses().get_email_identity(EmailIdentity=dev)["VerificationStatus"] == "SUCCESS"


def test_domain_identity_lifecycle(tenant, other_tenant):
    from crm.email import senders

    r = tenant.http.post("/v1/email/senders", json={"identity": "Mail.Acme-Shop.example"})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["identity"] == "mail.acme-shop.example" and s["type"] == "domain" and s["status"] == "pending"
    tags = _ses().get_email_identity(EmailIdentity="mail.acme-shop.example")["Tags"]
    assert {"Key": "rapport_tenant", "Value": tenant.id} in tags
    assert not senders.verified(other_tenant.ctx, "news@mail.acme-shop.example")  # not B's
    # the emulator verifies at once: a GET refreshes the status from SES
    got = tenant.http.get("/v1/email/senders/mail.acme-shop.example")
    assert got.status_code == 200 and got.json()["status"] == "verified"
    assert senders.verified(tenant.ctx, "news@mail.acme-shop.example")  # any address of the domain
    assert not senders.verified(tenant.ctx, "news@other.example")
    again = tenant.http.post("/v1/email/senders", json={"identity": "mail.acme-shop.example"})
    assert again.status_code == 200 and again.json()["identity"] == "mail.acme-shop.example"
    taken = other_tenant.http.post("/v1/email/senders", json={"identity": "mail.acme-shop.example"})
    assert taken.status_code == 409 and taken.json()["code"] == "identity_taken"
    assert other_tenant.http.get("/v1/email/senders/mail.acme-shop.example").status_code == 404
    assert other_tenant.http.delete("/v1/email/senders/mail.acme-shop.example").status_code == 404
    # the default sender's domain cannot go; another default frees it
    r = tenant.http.put("/v1/email/settings", json={"default_sender": "news@mail.acme-shop.example"})
    assert r.status_code == 200, r.text
    busy = tenant.http.delete("/v1/email/senders/mail.acme-shop.example")
    assert busy.status_code == 409 and busy.json()["code"] == "sender_in_use"
    tenant.http.put("/v1/email/settings", json={"default_sender": f"hello@{tenant.id}.example.test"})
    assert tenant.http.delete("/v1/email/senders/mail.acme-shop.example").status_code == 204
    assert tenant.http.get("/v1/email/senders/mail.acme-shop.example").status_code == 404
    assert "mail.acme-shop.example" not in [
        i["IdentityName"] for i in _ses().list_email_identities()["EmailIdentities"]]
    assert not senders.verified(tenant.ctx, "news@mail.acme-shop.example")


def test_address_identity_and_bad_input(tenant):
    r = tenant.http.post("/v1/email/senders", json={"identity": "news@acme-addr.example"})
    assert r.status_code == 201 and r.json()["type"] == "address" and r.json()["dkim"] == []
    assert tenant.http.get("/v1/email/senders/news@acme-addr.example").json()["status"] == "verified"
    for bad in ("not an identity", "a@b", "@acme.example", "acme", "x" * 250 + ".com"):
        r = tenant.http.post("/v1/email/senders", json={"identity": bad})
        assert r.status_code == 422 and r.json()["field"] == "identity", (bad, r.text)
    assert tenant.http.get("/v1/email/senders/nobody.example").status_code == 404


def test_dkim_records_from_ses_tokens():
    """SES answers a domain's create with three Easy DKIM tokens (the emulator with none)."""
    from crm.email import ses_identities

    records = ses_identities.dkim_records("acme.example", {"Tokens": ["abc", "def"]})
    assert records == [
        {"name": "abc._domainkey.acme.example", "type": "CNAME", "value": "abc.dkim.amazonses.com"},
        {"name": "def._domainkey.acme.example", "type": "CNAME", "value": "def.dkim.amazonses.com"}]
    assert ses_identities.status_of({"VerifiedForSendingStatus": False, "VerificationStatus": "PENDING"}) == "pending"
    assert ses_identities.status_of({"VerificationStatus": "FAILED"}) == "failed"
    assert ses_identities.status_of({"VerifiedForSendingStatus": True}) == "verified"
