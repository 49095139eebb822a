"""Fixtures of the agent's unit tests: a fake cloud (fake_api.py) on loopback, a local
SQLite database with customers and orders tables, and an agent wired to both. No AWS."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.agent.fake_api import Server

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT, phone TEXT, first_name TEXT, last_name TEXT, card TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE sales (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER, sold_at TEXT, total_cents INTEGER, lines_json TEXT,
    updated_at TEXT NOT NULL
);
"""


def config_data(url: str, state: Path, dsn: str, **customers: Any) -> dict[str, Any]:
    return {
        "api": {"url": url, "key": "rpk_test", "retries": 2, "backoff_seconds": 0},
        "agent": {"state": str(state), "poll_seconds": 0.01},
        "sources": [
            {
                "kind": "sql",
                "name": "pos",
                "dsn": dsn,
                "customers": {
                    "table": "customers",
                    "key": "id",
                    "updated_at": "updated_at",
                    "fields": {
                        "email": "email",
                        "phone": "phone",
                        "name.given": "first_name",
                        "name.family": "last_name",
                        "attributes.card": "card",
                    },
                    "owner": {"attributes.card": "local"},
                    "insert": True,
                    **customers,
                },
                "orders": {
                    "table": "sales",
                    "key": "id",
                    "updated_at": "updated_at",
                    "currency": "EUR",
                    "fields": {
                        "customer": "customer_id",
                        "placed_at": "sold_at",
                        "total": "total_cents",
                        "lines": "lines_json",
                    },
                },
            }
        ],
    }


class LocalDb:
    def __init__(self, path: Path):
        self.path = path
        self.dsn = f"sqlite:///{path}"
        with self.connect() as db:
            db.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        db.row_factory = sqlite3.Row
        return db

    def stamp(self) -> str:
        """Now in UTC, as text: like an application that writes CURRENT_TIMESTAMP."""
        from datetime import UTC, datetime

        return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def add(self, **values: Any) -> int:
        values.setdefault("updated_at", self.stamp())
        cols = ", ".join(values)
        with self.connect() as db:
            cur = db.execute(
                f"INSERT INTO customers ({cols}) VALUES ({', '.join('?' * len(values))})", tuple(values.values())
            )
            return int(cur.lastrowid or 0)

    def set(self, key: int, **values: Any) -> None:
        values.setdefault("updated_at", self.stamp())
        with self.connect() as db:
            db.execute(
                f"UPDATE customers SET {', '.join(f'{c} = ?' for c in values)} WHERE id = ?", (*values.values(), key)
            )

    def row(self, key: int) -> dict[str, Any]:
        with self.connect() as db:
            return dict(db.execute("SELECT * FROM customers WHERE id = ?", (key,)).fetchone())

    def rows(self) -> list[dict[str, Any]]:
        with self.connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM customers ORDER BY id")]

    def sale(self, **values: Any) -> int:
        values.setdefault("updated_at", self.stamp())
        with self.connect() as db:
            cols = ", ".join(values)
            cur = db.execute(
                f"INSERT INTO sales ({cols}) VALUES ({', '.join('?' * len(values))})", tuple(values.values())
            )
            return int(cur.lastrowid or 0)


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def local_db(tmp_path: Path) -> LocalDb:
    return LocalDb(tmp_path / "pos.sqlite")


@pytest.fixture
def make_agent(tmp_path: Path, server: Server, local_db: LocalDb):
    from rapport_agent import config as configs
    from rapport_agent.client import Client
    from rapport_agent.outbox import Store
    from rapport_agent.sync import Agent

    made: list[Any] = []

    def make(**customers: Any) -> Agent:
        cfg = configs.parse(config_data(server.url, tmp_path / "state.sqlite", local_db.dsn, **customers))
        store = Store(cfg.state_path(tmp_path))
        client = Client(cfg.api.url, cfg.api_key(), retries=cfg.api.retries, backoff=0, sleep=lambda s: None)
        agent = Agent(cfg, store, client)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.store.close()
        agent.client.close()
