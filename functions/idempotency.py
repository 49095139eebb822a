"""At-most-once side effects per domain event id, with the Powertools idempotency utility.

Records live under the event's tenant (``T#<tenant>#IDEM``) in the one table and expire
after 14 days (the DLQ's retention, so a redriven message is still recognised). Each
event costs 2 requests (claim, store the result), so only a subscriber with outside
effects (an email, a webhook, a Stripe call) uses it: ``consume(..., at_most_once=True)``
(functions/consumer.py). None does yet; loyalty and the timeline are idempotent on
their own and do without.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crm import settings
from crm.aws import dynamodb_client
from crm.context import TenantContext

TTL_SECONDS = 14 * 24 * 3600


class LocalContext:
    """What the pollers of `rapport dev` pass where Lambda passes its context."""

    function_name = "local"
    aws_request_id = "local"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining


def once(subscriber: str, event: dict[str, Any], handle: Callable[[dict[str, Any]], Any],
         lambda_context: Any = None) -> Any:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    store = DynamoDBPersistenceLayer(
        table_name=settings.table_name(), key_attr="pk", sort_key_attr="sk",
        static_pk_value=TenantContext(event["tenant_id"]).key("IDEM"), expiry_attr="ttl",
        boto3_client=dynamodb_client(),
    )
    config = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=TTL_SECONDS)
    # an in-flight record expires with the invocation, so a crash is retried, not blocked
    config.register_lambda_context(lambda_context or LocalContext())

    @idempotent_function(data_keyword_argument="event", persistence_store=store, config=config,
                         key_prefix=subscriber)
    def run(event: dict[str, Any]) -> Any:
        return handle(event)

    return run(event=event)
