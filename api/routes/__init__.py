"""Blueprints, one per resource. Import-light: see api/__init__.py.

Each module registers its operations in :data:`api.http.OPERATIONS` when imported;
:func:`load_all` imports every one, so the OpenAPI document is complete without
importing app.py (which registers the same modules' blueprints)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def load_all() -> list[ModuleType]:
    """Every route module of this package, imported (alphabetically, as app.py does)."""
    return [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
    ]
