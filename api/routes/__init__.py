"""Blueprints, one per resource. Import-light: see api/__init__.py."""
