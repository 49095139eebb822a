"""Crash injection, for the crash-safety tests only: with ``RAPPORT_AGENT_CRASH_AT=<point>``
in the environment the process ends with ``os._exit(70)`` (no cleanup, no flush, like a
power cut after the last fsync) when it reaches that point. Each point follows a durable
step of an upload or a download; the tests iterate over :data:`POINTS`."""

from __future__ import annotations

import os

ENV = "RAPPORT_AGENT_CRASH_AT"
EXIT_CODE = 70

POINTS = (
    # up
    "after_scan_enqueue",  # local changes are in the outbox, nothing sent
    "after_upload_sent",  # the server answered a batch, its results not yet stored
    "after_results_stored",  # results and bases stored, write-backs journaled, not yet applied locally
    "after_writeback",  # write-backs applied to the local database, journal not yet cleared
    # down
    "after_changes_read",  # a page of the change feed read, nothing fetched
    "after_fetch",  # customers fetched, nothing written locally
    "after_local_write",  # local rows written, bases and cursor not yet stored
    "after_cursor_stored",  # bases and cursor stored
    # csv drop folder
    "after_file_enqueued",  # a file's rows and its done marker committed, file not yet moved
)


def point(name: str) -> None:
    assert name in POINTS, name
    if os.environ.get(ENV) == name:
        os._exit(EXIT_CODE)
