"""Outbound webhooks (docs/webhooks.md): the tenant's endpoints and their signing secrets
(``endpoints``), the Standard Webhooks headers (``signing``) and the request models
(``schemas``). Sending is connectors/outbound.py's (crm never opens a socket to a
tenant's URL); scheduling deliveries, retries and replay are the delivery engine's."""
