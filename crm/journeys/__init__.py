"""Journeys: triggered, multi-step customer flows (docs/journeys.md). Only the pure core
is built; storage, routes and handlers are not yet.

Pure code (no I/O, unit- and property-tested on its own):
- ``schemas``: a journey's definition (trigger, steps, exit, re-entry, status), strict
  pydantic models whose errors name the step; rules are the segment rule language;
- ``plan``: one customer's run of a journey as a state machine keyed by (journey,
  customer, occurrence): when it starts (re-entry), what an exit event does (by event
  time, so a late order still cancels an unsent cart email), what is due next (sends
  with deterministic refs for the exactly-once sender, updates, waits, the frequency
  cap as a deferral), and birthdays in the tenant's time zone.
"""
