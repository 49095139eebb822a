"""Segments' tenant-wide work (crm/segments/build.py, crm/segments/cuts.py).

- ``run_build``: a ``{"type": "segment_build", "tenant_id", "segment_id", "version"}``
  message from the ``sync`` queue (functions/sync.py routes it here): one step of a
  segment's build, or of a deleted segment's drop (``"drop": true``). A step that runs
  out of time queues the next; a crash leaves the message to be redelivered, and the
  step resumes from the build's checkpoint.
- ``run_cuts``: the schedule (app.py ``segment_cuts``, hourly): each tenant's RFM cut
  points and VIP threshold, recomputed once a day per tenant, and within the hour for a
  tenant that has none yet.
"""
from __future__ import annotations

from typing import Any


def run_build(message: dict[str, Any], lambda_context: Any = None) -> dict[str, Any] | None:
    """One step; the next step's message (if any) is queued before returning."""
    from crm import queues
    from crm.segments import build

    following = build.step(message, lambda_context)
    if following is not None:
        queues.send(build.QUEUE, [following])
    return following


def run_cuts(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    """Every active tenant whose cut points are due (crm.segments.cuts.run_all)."""
    from crm.segments import cuts
    from functions.lambda_env import time_left

    return cuts.run_all(now, time_left=time_left(lambda_context))
