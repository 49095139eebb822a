"""Files that a file connector (kind ``file``, e.g. the CSV import) imports.

A client asks for an upload (``POST /v1/connections/{id}/uploads``) and gets a presigned
S3 ``PUT`` URL for the key ``uploads/<tenant>/<connection>/<upload id>.csv`` in the
uploads bucket (``RAPPORT_UPLOADS_BUCKET``; objects expire after 7 days). The key is
derived, never given by the client: a run of one tenant's connection can only ever read
that connection's uploads, so an upload id of another tenant (or connection) is simply
missing. Nothing is written to the table for an upload.

Requests: presigning is local (no AWS call); starting a run checks the object with one
``HeadObject``; a run reads it with ``GetObject`` (streamed).
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from crm import clock
from crm.context import TenantContext
from crm.errors import Invalid

URL_SECONDS = 15 * 60
MAX_BYTES = 50 * 1024 * 1024  # checked when a run starts (a presigned PUT cannot cap the size)
CONTENT_TYPE = "text/csv"
UPLOAD_ID = re.compile(r"^upl_[0-9A-Z]{26}$")


def bucket() -> str:
    try:
        return os.environ["RAPPORT_UPLOADS_BUCKET"]
    except KeyError:
        raise RuntimeError("RAPPORT_UPLOADS_BUCKET is not set: the uploads bucket is unknown") from None


def key(tenant_id: str, connection_id: str, upload_id: str) -> str:
    if not UPLOAD_ID.match(upload_id):
        raise Invalid(f"{upload_id!r} is not an upload id", field="upload_id")
    return f"uploads/{tenant_id}/{connection_id}/{upload_id}.csv"


@functools.lru_cache(maxsize=1)
def client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(signature_version="s3v4",
                                            retries={"mode": "standard", "max_attempts": 3}))


@dataclass
class Upload:
    upload_id: str
    url: str
    expires_at: str


def create(ctx: TenantContext, connection_id: str) -> Upload:
    """A new upload id and the presigned PUT URL for it (valid 15 minutes)."""
    from ulid import ULID

    upload_id = f"upl_{ULID()}"
    url = client().generate_presigned_url(
        "put_object", ExpiresIn=URL_SECONDS, HttpMethod="PUT",
        Params={"Bucket": bucket(), "Key": key(ctx.tenant_id, connection_id, upload_id),
                "ContentType": CONTENT_TYPE})
    return Upload(upload_id, url, clock.iso(clock.now() + timedelta(seconds=URL_SECONDS)))


def require(ctx: TenantContext, connection_id: str, upload_id: str) -> int:
    """The upload's size; 422 ``upload_missing`` if it was never uploaded (or expired, or
    belongs to another connection), 422 ``upload_too_large`` over :data:`MAX_BYTES`."""
    from botocore.exceptions import ClientError

    try:
        head = client().head_object(Bucket=bucket(), Key=key(ctx.tenant_id, connection_id, upload_id))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "403"):
            raise Invalid(f"upload {upload_id} has no file: PUT the file to the URL that POST "
                          f"/v1/connections/{connection_id}/uploads returned (uploads expire after 7 days)",
                          field="upload_id", code="upload_missing") from None
        raise
    size = int(head.get("ContentLength") or 0)
    if size > MAX_BYTES:
        raise Invalid(f"upload {upload_id} is {size} bytes; the limit is {MAX_BYTES} "
                      "(split the file)", field="upload_id", code="upload_too_large",
                      max_bytes=MAX_BYTES)
    return size


def open_body(tenant_id: str, connection_id: str, upload_id: str) -> Any:
    """The object's body as a streaming file-like (``read(n)``); raises ``LookupError``
    when the object is gone."""
    from botocore.exceptions import ClientError

    try:
        answer = client().get_object(Bucket=bucket(), Key=key(tenant_id, connection_id, upload_id))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise LookupError(upload_id) from None
        raise
    return answer["Body"]


def erase(tenant_id: str, mentions: Any) -> int:
    """Rewrite the tenant's uploaded files without the rows ``mentions(row)`` is true of
    (GDPR erasure; connectors/erasure.py): 1 ListObjectsV2 per 1,000 files under
    ``uploads/<tenant>/``, then per file 1 GetObject and, if a row went, 1 PutObject.
    Returns the files rewritten."""
    import csv
    import io

    s3, changed = client(), 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=f"uploads/{tenant_id}/"):
        for obj in page.get("Contents", []):
            raw = s3.get_object(Bucket=bucket(), Key=obj["Key"])["Body"].read()
            bom = raw.startswith(b"\xef\xbb\xbf")
            text = raw.decode("utf-8-sig", errors="replace")
            rows = list(csv.reader(io.StringIO(text, newline="")))
            kept = rows[:1] + [r for r in rows[1:] if not mentions(r)]
            if len(kept) == len(rows):
                continue
            out = io.StringIO(newline="")
            csv.writer(out, lineterminator="\r\n").writerows(kept)
            body = (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()
            s3.put_object(Bucket=bucket(), Key=obj["Key"], Body=body, ContentType=CONTENT_TYPE)
            changed += 1
    return changed


def _declare() -> None:
    from crm.schema import Kind, register

    register("upload", Kind("uploaded CSV file (S3, expires after 7 days)",
                            "uploads/<tenant>/<connection>/", "<upload id>.csv", "connection",
                            pii=("rows",), erasure="blank"))


_declare()
