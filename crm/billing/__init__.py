"""Billing: the plan catalogue, each tenant's plan and Stripe subscription state, plan
limits, rate limits, usage counters and metering (docs/billing.md)."""
