"""Event handlers: Lambda events (stream records, SQS batches, schedules) in, calls on
``crm`` out. Declared in app.py; every handler is idempotent and order-independent."""
