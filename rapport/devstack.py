"""The local stack behind ``rapport dev``: moto's server on loopback (or a given
endpoint), the table and queues from ``infra/``, the Chalice app over HTTP, a seeded
demo tenant, the Stripe double (rapport/stripe_double.py) billing goes to, and pollers that deliver the table's stream, the queues and the schedules
to the app's event handlers as Lambda would (rapport/pollers.py).

State lives in the emulator's memory and is gone when the stack stops.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _any_method(handler, name: str):
    if name.startswith("do_"):
        return handler._generic_handle
    raise AttributeError(name)


ACCESS_LOG = logging.getLogger("rapport.dev")


def _handler_class(base: type) -> type:
    """Chalice's request handler, logging one line per request to ``rapport.dev``:
    method, path (without the query string: it can hold emails and cursors), status, ms."""

    class DevRequestHandler(base):
        # API Gateway answers every method; Chalice's local handler knows only the common
        # ones and would answer 501 to TRACE or QUERY. Route any method through the app,
        # which answers 405 for a method a route does not declare.
        __getattr__ = _any_method

        def parse_request(self) -> bool:
            self._started = time.perf_counter()
            return super().parse_request()

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            ms = (time.perf_counter() - getattr(self, "_started", time.perf_counter())) * 1000
            path = (getattr(self, "path", "") or "").split("?", 1)[0]
            ACCESS_LOG.info("%s %s %s %.1f ms", getattr(self, "command", "-"), path,
                            getattr(code, "value", code), ms)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # http.server's own stderr lines: the access line above says it

        def do_GET(self) -> None:
            # /_dev/…: the dev server's own pages (the outbox), answered before the app, so
            # the deployed app has no such path
            if (self.path or "").startswith("/_dev/"):
                from rapport import outbox

                status, headers, body = outbox.respond(self.path, self.headers.get("Accept") or "")
                self._send_http_response(status, headers, body)
                return
            base._generic_handle(self)

    return DevRequestHandler


class _PerThread:
    """Chalice keeps the request being served (and its Lambda context) on the app object:
    one request at a time in Lambda, but the local server runs a thread per request, and
    two requests at once read each other's headers and body (another tenant's key). As a
    data descriptor on the app's class it wins over the instance attribute Chalice sets."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.local = threading.local()

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return self if obj is None else getattr(self.local, self.name, None)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(self.local, self.name, value)


def _requests_per_thread(chalice_app: Any) -> None:
    """Give each server thread its own ``current_request`` and ``lambda_context``."""
    if getattr(type(chalice_app), "requests_per_thread", False):
        return
    chalice_app.__class__ = type(type(chalice_app).__name__, (type(chalice_app),), {
        "current_request": _PerThread("current_request"),
        "lambda_context": _PerThread("lambda_context"),
        "requests_per_thread": True,
    })


def _one_handler_per_error(chalice_app: Any) -> None:
    """Powertools' JSON logger (api/lambda_env.py) writes to the app's logger
    (``rapport``); app.py turns Chalice's own stdout handler off, and any plain handler
    still found there is dropped, so each error comes out once. The access lines go to
    stderr."""
    chalice_app.log.handlers = [h for h in chalice_app.log.handlers
                                if type(h.formatter) is not logging.Formatter]
    if not ACCESS_LOG.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        ACCESS_LOG.addHandler(handler)
        ACCESS_LOG.setLevel(logging.INFO)
        ACCESS_LOG.propagate = False  # not again through the app's logger, its parent


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class PortInUse(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_port(port: int) -> None:
    """Refuse a port something listens on. SO_REUSEADDR, as the server itself binds: the
    connections of a crashed ``rapport dev`` linger in TIME_WAIT for 60 s and must not
    keep its port (on Linux the option never lets two sockets listen on one port)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on 127.0.0.1 is already in use; "
                                f"stop what holds it or pass --port N") from None
            raise


@dataclass
class Running:
    api_url: str
    endpoint_url: str
    table: str
    tenant_id: str | None
    api_key: str | None
    pollers: list[str] = field(default_factory=list)
    stripe_url: str | None = None
    stripe_webhook_secret: str | None = None


class DevStack:
    def __init__(self, port: int, endpoint_url: str | None, table: str = "rapport",
                 seed: bool = True, pollers: bool = True, schedule_seconds: float = 5.0,
                 stripe: bool = False) -> None:
        self.port, self.endpoint_url, self.table, self.seed = port, endpoint_url, table, seed
        self.stripe = stripe
        self.stripe_double = None   # rapport.stripe_double.StripeDouble, once started
        self.pollers, self.schedule_seconds = pollers, schedule_seconds
        self.queues = None          # infra.bootstrap.LocalQueues, once started
        self.pipeline = None        # rapport.pollers.EventPipeline, once pollers run
        self._chalice_app = None
        self._moto = None
        self._http = None
        self._thread: threading.Thread | None = None

    def start(self) -> Running:
        check_port(self.port)
        endpoint = self.endpoint_url or self._start_emulator()
        from rapport import env

        env.configure(endpoint, self.table)
        os.environ["RAPPORT_LOCAL_DEV"] = "1"  # vendor URLs may be loopback fakes (connectors/sdk/net.py)
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # request logs are for Lambda
        import boto3

        from infra.bootstrap import create_connector_resources, create_email_resources, create_queues, create_table

        create_table(boto3.client("dynamodb"), self.table)
        self.queues = create_queues(boto3.client("sqs"), self.table)  # named after the table
        env.configure_queues(self.queues.queues)
        os.environ.update(create_connector_resources(boto3.session.Session(), self.table))
        os.environ.update(create_email_resources(boto3.session.Session(), self.table, f"http://127.0.0.1:{self.port}"))
        from rapport import outbox

        outbox.install()  # the emulator's SES stamps each message's time (the outbox's sent_at)
        if self.stripe:
            self._start_stripe_double()
        tenant_id = api_key = None
        if self.seed:
            from rapport.seed import seed_demo

            tenant_id, api_key = seed_demo()
        self._serve()
        if self.pollers:
            self.start_pollers()
        double = self.stripe_double
        return Running(f"http://127.0.0.1:{self.port}/v1", endpoint, self.table, tenant_id, api_key,
                       self.pipeline.describe() if self.pipeline else [],
                       double.url if double else None, double.webhook_secret if double else None)

    def _start_stripe_double(self) -> None:
        """The Stripe double (rapport/stripe_double.py) on loopback, delivering its events to
        this API's webhook route, and the app's Stripe settings pointing at it: billing works
        without a Stripe account."""
        import secrets

        from rapport.stripe_double import StripeDouble

        self.stripe_double = StripeDouble(f"http://127.0.0.1:{self.port}/v1/billing/stripe/webhook")
        url = self.stripe_double.start()
        os.environ.update({
            "RAPPORT_STRIPE_API_KEY": f"sk_test_rapport_dev_{secrets.token_hex(8)}",
            "RAPPORT_STRIPE_API_BASE": url,
            "RAPPORT_STRIPE_WEBHOOK_SECRETS": self.stripe_double.webhook_secret,
        })

    def start_pollers(self, starting_position: str | None = None):
        """Deliver the stream, the queues and the schedules to app.py's handlers (from
        the app's own starting position, TRIM_HORIZON: the seed is processed too, unless
        ``starting_position`` says otherwise). Returns the EventPipeline."""
        from rapport.pollers import EventPipeline

        if self.pipeline is None:
            from rapport.ses_events import SesEventsDouble

            pipeline = EventPipeline.for_chalice_app(
                self._chalice_app, table=self.table, queues=self.queues.queues,
                stream_dead_letter=self.queues.stream_dead_letter,
                schedule_seconds=self.schedule_seconds, starting_position=starting_position)
            # the emulator's SES publishes no events: the double puts the ones SES would on the bus
            pipeline.pollers.append(SesEventsDouble(os.environ.get("RAPPORT_SES_CONFIGURATION_SET", self.table),
                                                    skip_existing=starting_position == "LATEST"))
            self.pipeline = pipeline.start()
        return self.pipeline

    def stop_pollers(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
            self.pipeline = None

    def _start_emulator(self) -> str:
        from rapport import emulator

        port = free_port()
        self._moto = emulator.start(port)
        return f"http://127.0.0.1:{port}"

    def _serve(self) -> None:
        from chalice.cli.factory import CLIFactory
        from chalice.local import ChaliceRequestHandler, LocalDevServer, ThreadedHTTPServer

        from rapport import local_router

        local_router.install()  # API Gateway's {proxy+}: unknown paths reach the 404 catch-all
        factory = CLIFactory(str(PROJECT_DIR))
        config = factory.create_config_obj(chalice_stage_name="local")
        self._chalice_app = config.chalice_app  # imports app.py
        # socketserver listens with a backlog of 5: a burst of concurrent clients (20
        # parallel redemptions) would see connections reset. API Gateway has no such limit.
        ThreadedHTTPServer.request_queue_size = 128
        ThreadedHTTPServer.allow_reuse_address = True  # see check_port
        _one_handler_per_error(config.chalice_app)
        _requests_per_thread(config.chalice_app)
        server: LocalDevServer = LocalDevServer(config.chalice_app, config, "127.0.0.1", self.port,
                                                handler_cls=_handler_class(ChaliceRequestHandler))
        self._http = server
        self._thread = threading.Thread(target=server.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_pollers()
        if self._http is not None:
            self._http.shutdown()
            self._http.server.server_close()
        if self.stripe_double is not None:
            self.stripe_double.stop()
        if self._moto is not None:
            self._moto.stop()
