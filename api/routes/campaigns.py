"""Routes: filled in by issue 13 (email). Registered in app.py."""

from __future__ import annotations

from chalice import Blueprint

bp = Blueprint(__name__)
