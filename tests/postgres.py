"""A real PostgreSQL server for the agent's on-premise side, from Debian's packages.

``postgres_server`` runs ``initdb`` + ``pg_ctl`` from ``/usr/lib/postgresql/<n>/bin``
(``.ci/run`` installs the ``postgresql`` package) into a temporary directory, listening on
loopback only, once per test file; ``postgres_url`` hands each test a database of its own.
PostgreSQL refuses to run as root: under root (CI) the cluster belongs to Debian's
``postgres`` user and the server is started through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


def _bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does it); "
            "the agent's tests run against a real server"
        )
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """One statement through psql (no Python driver needed here)."""
        subprocess.run(
            [os.path.join(_bin_dir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host,
             "-p", str(self.port), "-U", self.user, "-d", database, "-c", statement],
            check=True, capture_output=True, text=True, timeout=60,
        )


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _bin_dir()
    root = tempfile.mkdtemp(prefix="rapport-pg-")
    data, sockets = os.path.join(root, "data"), os.path.join(root, "run")
    os.makedirs(sockets)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    user, port = "rapport", _free_port()
    subprocess.run(_as_owner([os.path.join(bindir, "initdb"), "-D", data, "-U", user, "-A", "trust",
                              "--no-sync", "-E", "UTF8", "--locale", "C"]),
                   check=True, capture_output=True, text=True, timeout=120)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off"
    log = os.path.join(root, "server.log")
    started = subprocess.run(_as_owner([os.path.join(bindir, "pg_ctl"), "-D", data, "-o", options, "-l", log,
                                        "-w", "-t", "60", "start"]), capture_output=True, text=True, timeout=90)
    if started.returncode != 0:
        with open(log, encoding="utf-8", errors="replace") as fh:
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{fh.read()[-2000:]}")
    try:
        yield PostgresServer("127.0.0.1", port, user)
    finally:
        subprocess.run(_as_owner([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database on the file's server, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.sql(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
