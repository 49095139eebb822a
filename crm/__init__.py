"""Rapport's domain core: tenants, API keys, customers and the single-table storage.

Nothing here knows about Chalice, Lambda or HTTP, so the same service call serves a
REST request, a stream record, a connector sync or a CLI command. Every function
that touches tenant data takes a :class:`crm.context.TenantContext` argument.
"""
