"""Shipments: parcels of orders, tracked by a shipping provider (docs/shipping.md)."""
