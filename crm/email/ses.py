"""The SES v2 call that sends one raw message, with the message tags SES events carry
back (``mail.tags``: the SES events handler maps an event to its tenant, customer and
campaign or journey with them)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from crm import settings

# SES answers these for a message it will never accept as it is: the recipient's send is
# recorded ``failed`` (not retried); any other error is transient (the batch is retried)
PERMANENT = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException"})


class Permanent(Exception):
    """SES refused this message for good (the code and message in the text)."""


@lru_cache(maxsize=1)
def client() -> Any:
    import boto3
    from botocore.config import Config

    # a short, bounded call, and one attempt: botocore would retry a read timeout, and a
    # SendEmail SES accepted but answered slowly would go out again. The sender decides
    # instead: an SES error releases the lease (retried later), no answer keeps it until
    # it expires (docs/campaigns.md, "Exactly once")
    return boto3.client("sesv2", config=Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 1}))


@dataclass(frozen=True)
class Tags:
    tenant_id: str
    customer_id: str
    ref: str  # "cmp_…" or "jrn_…"
    kind: str  # marketing | transactional

    def ses(self) -> list[dict[str, str]]:
        return [
            {"Name": "rapport_tenant", "Value": self.tenant_id},
            {"Name": "rapport_customer", "Value": self.customer_id},
            {"Name": "rapport_ref", "Value": self.ref},
            {"Name": "rapport_kind", "Value": self.kind},
        ]

    def header(self) -> str:
        """The same tags as SES's ``X-SES-MESSAGE-TAGS`` header of a raw message. SES uses
        the API's tags when both are given (and removes the header); the local SES events
        double (rapport/ses_events.py) reads the header, as moto drops the API's."""
        return ", ".join(f"{t['Name']}={t['Value']}" for t in self.ses())


def send_raw(sender: str, to: str, raw: bytes, tags: Tags) -> str:
    """SES v2 SendEmail with ``Content.Raw``; returns SES's MessageId. Raises
    :class:`Permanent` for a refusal, botocore's errors otherwise."""
    from botocore.exceptions import ClientError

    try:
        answer = client().send_email(
            FromEmailAddress=sender,
            Destination={"ToAddresses": [to]},
            Content={"Raw": {"Data": raw}},
            ConfigurationSetName=settings.ses_configuration_set(),
            EmailTags=tags.ses(),
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in PERMANENT:
            raise Permanent(f"{code}: {exc.response.get('Error', {}).get('Message', '')}") from exc
        raise
    return str(answer["MessageId"])
