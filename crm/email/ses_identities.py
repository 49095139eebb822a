"""The SES v2 calls for sender identities (create, read, delete) and what Rapport reads
from their answers: the verification status and the DKIM records to publish.

Every identity is tagged ``rapport_tenant=<tenant id>``: SES identities are the
account's, so the tag is how a second tenant asking for the same domain is told it is
taken (409) instead of sharing it. IAM: ``ses:CreateEmailIdentity``,
``ses:GetEmailIdentity``, ``ses:DeleteEmailIdentity``, ``ses:TagResource`` (a create
with tags), and locally only (the dev sender) ``ses:VerifyEmailIdentity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TENANT_TAG = "rapport_tenant"


class IdentityTaken(Exception):
    """The identity exists in the SES account for another tenant."""


class IdentityMissing(Exception):
    """SES does not know the identity (deleted outside Rapport)."""


@dataclass(frozen=True)
class Found:
    status: str  # pending | verified | failed
    dkim: list[dict[str, str]] = field(default_factory=list)
    tenant: str | None = None


def _client() -> Any:
    from crm import aws

    return aws.client("sesv2")


def dkim_records(identity: str, attributes: dict[str, Any] | None) -> list[dict[str, str]]:
    """The CNAME records of Easy DKIM: ``<token>._domainkey.<domain>`` ->
    ``<token>.dkim.amazonses.com`` (an address identity signs with its domain's)."""
    domain = identity.rsplit("@", 1)[-1]
    tokens = (attributes or {}).get("Tokens") or []
    return [
        {"name": f"{token}._domainkey.{domain}", "type": "CNAME", "value": f"{token}.dkim.amazonses.com"}
        for token in tokens
    ]


def status_of(answer: dict[str, Any]) -> str:
    """pending | verified | failed from a CreateEmailIdentity or GetEmailIdentity answer."""
    if answer.get("VerifiedForSendingStatus"):
        return "verified"
    status = answer.get("VerificationStatus")
    if status == "SUCCESS":
        return "verified"
    if status == "FAILED":
        return "failed"
    return "pending"  # PENDING, TEMPORARY_FAILURE, NOT_STARTED, or not said (a create)


def _tenant_of(tags: list[dict[str, str]] | None) -> str | None:
    for tag in tags or []:
        if tag.get("Key") == TENANT_TAG:
            return tag.get("Value")
    return None


def get(identity: str) -> Found:
    """1 GetEmailIdentity. Raises IdentityMissing."""
    from botocore.exceptions import ClientError

    client = _client()
    try:
        answer = client.get_email_identity(EmailIdentity=identity)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
        raise IdentityMissing(identity) from None
    return Found(
        status_of(answer), dkim_records(identity, answer.get("DkimAttributes")), _tenant_of(answer.get("Tags"))
    )


def create(identity: str, tenant_id: str, *, fresh: bool = False) -> Found:
    """1 GetEmailIdentity + 1 CreateEmailIdentity (tagged with the tenant). An identity
    that exists already is the tenant's own (a retry: its current state) or
    IdentityTaken. SES refuses a second create (AlreadyExists); the emulator would
    overwrite, so the read comes first. ``fresh``: a name no one can hold yet (the dev
    sender under the tenant's own id), no read."""
    client = _client()
    if not fresh:
        try:
            found = get(identity)
        except IdentityMissing:
            pass
        else:
            if found.tenant != tenant_id:
                raise IdentityTaken(identity)
            return found
    try:
        answer = client.create_email_identity(EmailIdentity=identity, Tags=[{"Key": TENANT_TAG, "Value": tenant_id}])
    except client.exceptions.AlreadyExistsException:
        found = get(identity)  # a race with another create
        if found.tenant != tenant_id:
            raise IdentityTaken(identity) from None
        return found
    return Found(status_of(answer), dkim_records(identity, answer.get("DkimAttributes")), tenant_id)


def delete(identity: str) -> None:
    """1 DeleteEmailIdentity (already gone: nothing to do)."""
    client = _client()
    try:
        client.delete_email_identity(EmailIdentity=identity)
    except client.exceptions.NotFoundException:
        pass
