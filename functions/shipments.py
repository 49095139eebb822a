"""The shipments re-poll schedule (app.shipments_schedule, every 15 minutes).

A webhook usually brings a parcel's news first; this is what makes a lost webhook or a
provider outage lose nothing: every non-terminal shipment is listed on a sparse index
by its next poll time (``SHIPMENT_DUE#0``, written with the shipment), and each run asks
the provider again for at most ``RAPPORT_SHIPMENT_POLL_BATCH`` (100) of the due ones.
Imported parcels without a tracker get theirs created through the tenant's shipping
connection. A provider that cannot answer is asked again 30 minutes later; what the
provider says twice changes nothing (connectors/shipping.py, crm/shipments/service.py).

Requests: 1 Query of the index; per shipment 1 GetItem (its tenant, once per run) +
1 BatchGetItem (its connection) + 1 KMS Decrypt (cached) + the provider's GET + 1 GetItem +
1 BatchGetItem, then 1 TransactWriteItems when something changed, else 1 UpdateItem (its
next poll time).
"""
from __future__ import annotations

import os
from typing import Any

from functions.lambda_env import time_left


def batch() -> int:
    return int(os.environ.get("RAPPORT_SHIPMENT_POLL_BATCH", "100"))


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    from connectors import shipping
    from crm import clock

    return shipping.repoll(now or clock.now_iso(), batch(), time_left(lambda_context))
