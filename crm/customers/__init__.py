"""Customers: profile, consent, identities, timeline and the 360 view."""
