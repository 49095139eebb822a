"""The local stack behind ``rapport dev``: moto's server on loopback (or a given
endpoint), the table from ``infra/``, the Chalice app over HTTP, a seeded demo tenant.

State lives in the emulator's memory and is gone when the stack stops.
"""
from __future__ import annotations

import errno
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _any_method(handler, name: str):
    if name.startswith("do_"):
        return handler._generic_handle
    raise AttributeError(name)


class PortInUse(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_port(port: int) -> None:
    with socket.socket() as s:
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


class DevStack:
    def __init__(self, port: int, endpoint_url: str | None, table: str = "rapport",
                 seed: bool = True) -> None:
        self.port, self.endpoint_url, self.table, self.seed = port, endpoint_url, table, seed
        self._moto = None
        self._http = None
        self._thread: threading.Thread | None = None

    def start(self) -> Running:
        check_port(self.port)
        endpoint = self.endpoint_url or self._start_emulator()
        from rapport import env

        env.configure(endpoint, self.table)
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # request logs are for Lambda
        import boto3

        from infra.bootstrap import create_table

        create_table(boto3.client("dynamodb"), self.table)
        tenant_id = api_key = None
        if self.seed:
            from rapport.seed import seed_demo

            tenant_id, api_key = seed_demo()
        self._serve()
        return Running(f"http://127.0.0.1:{self.port}/v1", endpoint, self.table, tenant_id, api_key)

    def _start_emulator(self) -> str:
        from rapport import emulator

        port = free_port()
        self._moto = emulator.start(port)
        return f"http://127.0.0.1:{port}"

    def _serve(self) -> None:
        from chalice.cli.factory import CLIFactory
        from chalice.local import ChaliceRequestHandler, LocalDevServer, create_local_server

        factory = CLIFactory(str(PROJECT_DIR))
        config = factory.create_config_obj(chalice_stage_name="local")
        server: LocalDevServer = create_local_server(config.chalice_app, config, "127.0.0.1", self.port)
        ChaliceRequestHandler.log_message = lambda *a, **k: None  # no per-request access log
        # API Gateway answers every method; Chalice's local handler knows only the common
        # ones and would answer 501 to TRACE or QUERY. Route any method through the app,
        # which answers 405 for a method a route does not declare.
        ChaliceRequestHandler.__getattr__ = _any_method
        self._http = server
        self._thread = threading.Thread(target=server.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server.server_close()
        if self._moto is not None:
            self._moto.stop()
