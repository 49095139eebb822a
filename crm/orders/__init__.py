"""Orders from every channel: placed, paid, fulfilled, cancelled, refunded."""
