"""Sealing a connection's secret config fields with KMS, outside the SDK (which partners
import, and which runs without boto3 in the on-premise agent).

One KMS ``Encrypt`` per save, of the secrets as JSON (at most 4096 bytes: KMS's limit for
direct encryption, so no data key and no crypto library in the Lambda zip). The encryption
context names the tenant and the connection, so a blob copied to another tenant's
connection, or to another connection, does not decrypt. Only the ciphertext is stored. The KMS calls are
crm/sealing.py's, which webhook endpoints' signing secrets share.
"""
from __future__ import annotations

from crm import sealing as _kms_sealing
from crm.errors import Invalid

MAX_PLAINTEXT_BYTES = _kms_sealing.MAX_PLAINTEXT_BYTES  # KMS Encrypt's limit on the plaintext
FORMAT = _kms_sealing.FORMAT  # sealed = {"format": "kms", "blob": base64(CiphertextBlob)}
key_id = _kms_sealing.key_id


def _context(tenant_id: str, connection_id: str) -> dict[str, str]:
    return {"tenant": tenant_id, "connection": connection_id}


def check_size(secrets: dict[str, str]) -> None:
    """Raise Invalid (422) naming the largest secret field when the secrets together are
    more than one KMS Encrypt takes. The message never repeats a value."""
    size = len(_kms_sealing.plaintext(secrets))
    if size > MAX_PLAINTEXT_BYTES:
        name = max(secrets, key=lambda k: len(secrets[k].encode()))
        raise Invalid(f"the secret config fields take {size} bytes, more than the {MAX_PLAINTEXT_BYTES} "
                      f"bytes that can be sealed: shorten config.{name}", field=f"config.{name}")


def seal(tenant_id: str, connection_id: str, secrets: dict[str, str]) -> dict[str, str]:
    check_size(secrets)
    return _kms_sealing.seal(_context(tenant_id, connection_id), secrets)


def unseal(tenant_id: str, connection_id: str, sealed: dict[str, str]) -> dict[str, str]:
    if not sealed:
        return {}
    if not _kms_sealing.is_sealed(sealed):  # the AES-GCM envelope of earlier versions
        raise Invalid("the connection's secrets were sealed by an earlier version of Rapport: "
                      "PATCH the connection with its secret fields again", field="config",
                      code="config_invalid")
    return _kms_sealing.unseal(_context(tenant_id, connection_id), sealed)
