"""The subscribers' queues: re-exported from :mod:`crm.queues`, which connectors/ and
api/ use too (they never import functions/)."""
from crm.queues import MAX_RECEIVES, SUBSCRIBERS, env_name, send, url

__all__ = ["MAX_RECEIVES", "SUBSCRIBERS", "env_name", "send", "url"]
