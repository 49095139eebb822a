"""``Idempotency-Key`` on POST, with the Powertools idempotency utility.

Records live in the same table under the tenant (``T#<tenant>#IDEM`` / hash) and
expire after 24 h through the table's TTL. A retry with the same key and the same
request returns the first response (with ``Idempotent-Replayed: true``); the same
key with a different request gets 422; one still in flight gets 409. Errors are
not stored, so a request that failed validation can be corrected and retried. A
result with a ``replay_body`` (api/http.py ``Result``) is stored with that body instead
of its own: the first answer may hold a secret the replay must not (a webhook endpoint's).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from api.http import REPLAY_BODY
from crm import settings
from crm.aws import dynamodb_client
from crm.errors import Conflict, Invalid

MAX_KEY_LENGTH = 255
# printable ASCII, no space at either end (HTTP strips those), at most 255 characters
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"
TTL_SECONDS = 24 * 3600


def run(op: Any, req: Any, key: str, raw_body: bytes, call: Callable[[], dict]) -> dict:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    if not re.match(KEY_PATTERN, key):
        raise Invalid(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters", field="Idempotency-Key")
    store = DynamoDBPersistenceLayer(
        table_name=settings.table_name(),
        key_attr="pk",
        sort_key_attr="sk",
        static_pk_value=req.ctx.key("IDEM"),
        expiry_attr="ttl",
        boto3_client=dynamodb_client(),
    )
    config = IdempotencyConfig(
        event_key_jmespath="key", payload_validation_jmespath="request", expires_after_seconds=TTL_SECONDS
    )
    if req.lambda_context is not None:  # lets an in-flight record expire with the invocation
        config.register_lambda_context(req.lambda_context)
    replayed = {"value": True}
    first: dict[str, dict] = {}

    @idempotent_function(
        data_keyword_argument="data", persistence_store=store, config=config, key_prefix=op.operation_id
    )
    def execute(data: dict) -> dict:
        replayed["value"] = False
        result = call()
        if REPLAY_BODY not in result:
            return result
        # the first caller gets the whole answer; the record (and so every replay) gets
        # the replay body: a one-time secret is never stored in the table
        first["result"] = {k: v for k, v in result.items() if k != REPLAY_BODY}
        return {**first["result"], "body": result[REPLAY_BODY]}

    request = {"path": req.params, "body": hashlib.sha256(raw_body).hexdigest()}
    try:
        result = execute(data={"key": key, "request": request})
    except IdempotencyValidationError:
        raise Invalid(
            "this Idempotency-Key was already used with a different request",
            field="Idempotency-Key",
            code="idempotency_key_reused",
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise Conflict(
            "a request with this Idempotency-Key is still in progress; retry shortly",
            field="Idempotency-Key",
            code="idempotency_in_progress",
        ) from None
    if replayed["value"]:
        result = {**result, "headers": {**result["headers"], "Idempotent-Replayed": "true"}}
    return first.get("result", result)
