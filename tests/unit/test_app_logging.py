"""Each log line is written once in Lambda: Powertools' JSON logger (api/lambda_env.py,
functions/lambda_env.py) writes to the ``rapport`` logger, which is also the Chalice app's
``app.log``; a plain stdout handler from Chalice on it would print every error twice."""
from __future__ import annotations

import logging
import sys


def test_the_app_adds_no_second_handler_to_the_shared_logger():
    import app

    assert app.app.log is logging.getLogger("rapport")
    plain = [h for h in app.app.log.handlers
             if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout
             and type(h.formatter) is logging.Formatter]
    assert plain == []
