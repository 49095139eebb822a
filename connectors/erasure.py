"""Erasure of a customer's data that connectors hold (crm/erasure.py runs these hooks):
the rejected records of runs and the uploaded files. crm does not import connectors;
importing this module registers the hooks (functions/erasure.py does)."""
from __future__ import annotations

from functools import partial

from crm import erasure
from crm.context import TenantContext


def runs(ctx: TenantContext, customer_id: str, terms: erasure.Terms) -> int:
    """Drop the rejected records that mention the customer from every run's report: 1 Query
    per page of the tenant's connections (gsi1), 1 Query per connection's runs, 1 PutItem
    per changed run."""
    from connectors.store import ConnectionItem, RunItem

    changed = 0
    for conn in ConnectionItem.gsi1.query(ctx.key("CONNECTIONS")):
        for run in RunItem.query(ctx.key("CONN", conn.connection_id), RunItem.sk.startswith("RUN#"),
                                 consistent_read=True):
            if not isinstance(run, RunItem):
                continue
            rejected = run.data.get("rejected") or []
            kept = [r for r in rejected if not erasure.mentions(r, terms, customer_id)]
            if len(kept) != len(rejected):
                run.data = {**run.data, "rejected": kept}
                run.save()
                changed += 1
    return changed


def uploads(ctx: TenantContext, customer_id: str, terms: erasure.Terms) -> int:
    from connectors import uploads as files

    return files.erase(ctx.tenant_id, partial(erasure.mentions, terms=terms, customer_id=customer_id))


erasure.register("sync_run", runs)
erasure.register("upload", uploads)
