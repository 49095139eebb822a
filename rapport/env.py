"""Point the process at an AWS endpoint (the emulator, or AWS when none is given)."""
from __future__ import annotations

import os

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def configure(endpoint_url: str | None, table: str | None = None) -> None:
    """Must run before crm.storage is imported: PynamoDB reads the table name then."""
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    if table:
        os.environ["RAPPORT_TABLE"] = table


def configure_queues(urls: dict[str, str]) -> None:
    """Give the process the queue URLs the functions read (``RAPPORT_QUEUE_<NAME>_URL``,
    crm/queues.py): ``urls`` is {subscriber: URL}, e.g. ``LocalQueues.queues``."""
    from crm.queues import env_name

    for subscriber, url in urls.items():
        os.environ[env_name(subscriber)] = url
