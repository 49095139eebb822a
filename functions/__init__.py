"""Event handlers (DynamoDB stream, SQS, schedules), declared in app.py.

Empty until the events issue: a package so that the layering (entry points ->
connectors -> crm) has its place from the start.
"""
