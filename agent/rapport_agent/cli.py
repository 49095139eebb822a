"""``rapport-agent``: init, run [--once], status (docs/agent.md).

Exit status: 0 done; 1 ``run --once`` could not reach the API (the outbox keeps the
changes); 2 a config error (including 403/404 from the API); 3 the key was refused (401:
revoked or unknown; the queue is kept as it is)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rapport_agent import __version__
from rapport_agent.client import AccessDenied, ApiError, Client, Unauthorized
from rapport_agent.config import DEFAULT_PATH, EXAMPLE, Config, ConfigError, load
from rapport_agent.outbox import Store

EXIT_OFFLINE, EXIT_CONFIG, EXIT_UNAUTHORIZED = 1, 2, 3

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Rapport's on-premise agent (docs/agent.md).")
console = Console()
errors = Console(stderr=True)

ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="the TOML config file")]


def _load(path: Path) -> Config:
    try:
        return load(path)
    except ConfigError as exc:
        errors.print(f"[red]config error[/red] ({path}): {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None


def _store(config: Config, path: Path) -> Store:
    return Store(config.state_path(path.resolve().parent))


def _client(config: Config) -> Client:
    return Client(
        config.api.url,
        config.api_key(),
        timeout=config.api.timeout_seconds,
        retries=config.api.retries,
        backoff=config.api.backoff_seconds,
    )


@app.command()
def init(
    config: ConfigPath = Path(DEFAULT_PATH),
    check: Annotated[bool, typer.Option("--check", help="validate the config, the sources and the API key")] = False,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing config")] = False,
) -> None:
    """Write an example config, or (--check) validate one and its connectivity."""
    if not check:
        if config.exists() and not force:
            errors.print(f"{config} exists: edit it, or pass --force to overwrite it with the example")
            raise typer.Exit(EXIT_CONFIG)
        config.write_text(EXAMPLE, encoding="utf-8")
        console.print(
            f"wrote {config}: set api.url, the key (or RAPPORT_AGENT_KEY) and the sources, then "
            f"`rapport-agent init --check --config {config}`"
        )
        return
    cfg = _load(config)
    from rapport_agent.scan import open_sources

    try:
        locals_ = open_sources(cfg)
    except Exception as exc:  # noqa: BLE001 - any driver error is reported as is
        errors.print(f"[red]a source cannot be opened[/red]: {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    console.print(f"sources: {', '.join(lo.name for lo in locals_)} open")
    try:
        client = _client(cfg)
        me = client.me()
    except ConfigError as exc:
        errors.print(f"[red]config error[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    except Unauthorized:
        errors.print("[red]the API refused the key[/red] (401): it is unknown or revoked", highlight=False)
        raise typer.Exit(EXIT_UNAUTHORIZED) from None
    except ApiError as exc:
        errors.print(f"[red]the API cannot be used[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG if isinstance(exc, AccessDenied) else EXIT_OFFLINE) from None
    if cfg.agent.source is not None and me.get("source") != cfg.agent.source:
        errors.print(
            f"[red]config error[/red]: agent.source is {cfg.agent.source!r}, the agent's source is "
            f"{me.get('source')!r}",
            highlight=False,
        )
        raise typer.Exit(EXIT_CONFIG)
    console.print(f"API: agent {me['id']} ({me.get('name')}), source {me.get('source')}, status {me.get('status')}")


@app.command()
def run(
    config: ConfigPath = Path(DEFAULT_PATH),
    once: Annotated[bool, typer.Option("--once", help="one full cycle up and down, then exit")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Sync until stopped (or --once)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines name every request
    cfg = _load(config)
    store = _store(cfg, config)
    from rapport_agent.sync import Agent
    from rapport_agent.sync import run as run_loop

    try:
        agent = Agent(cfg, store, _client(cfg))
        code = run_loop(agent, once=once)
    except Unauthorized as exc:
        store.put("last_error", f"401: the API refused the key ({exc.status}); revoked or unknown")
        queued = store.counts()["queued"]
        errors.print(
            f"[red]the API refused the key[/red] (401: revoked or unknown). The agent stops; its queue "
            f"({queued} records) is kept. Set a new key (POST /v1/agents/{{id}}/key) and run again.",
            highlight=False,
        )
        raise typer.Exit(EXIT_UNAUTHORIZED) from None
    except (ConfigError, AccessDenied, LookupError) as exc:
        store.put("last_error", str(exc)[:500])
        errors.print(f"[red]config error[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    finally:
        store.close()
    raise typer.Exit(code)


@app.command()
def status(config: ConfigPath = Path(DEFAULT_PATH)) -> None:
    """What the local state says (works offline): queued, parked, last sync, lag, errors."""
    cfg = _load(config)
    store = _store(cfg, config)
    from datetime import datetime

    from common import clock

    counts = store.counts()
    oldest = store.oldest_queued_at()
    lag = (clock.now() - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
    table = Table(show_header=False, box=None)
    for name, value in (
        ("agent", f"{store.get('agent_id') or '(not yet identified)'}  source {store.get('source') or '-'}"),
        ("version", __version__),
        ("state", str(store.path)),
        ("queued", str(counts["queued"])),
        ("parked", str(counts["parked"])),
        ("acked (kept)", str(counts["acked"])),
        ("lag", f"{lag:.0f} s (oldest queued record)" if oldest else "0 s"),
        ("last sync", store.get("last_sync_at") or "never"),
        ("last upload", store.get("last_upload_at") or "never"),
        ("last download", store.get("last_download_at") or "never"),
        ("cursor", store.get("cursor") or "(none: the first run starts at now)"),
        ("hlc", str(store.hlc())),
        ("clock offset", _offset(store.get("clock_offset_ms"))),
        ("last error", store.get("last_error") or "-"),
    ):
        table.add_row(f"[bold]{name}[/bold]", value)
    console.print(table)
    parked = store.parked(20)
    if parked:
        rows = Table(title=f"parked records (newest {len(parked)} of {counts['parked']})")
        for col in ("seq", "kind", "external id", "reason"):
            rows.add_column(col)
        for record in parked:
            rows.add_row(str(record.seq), record.kind, record.external_id, record.reason or "")
        console.print(rows)
    store.close()


def _offset(ms: int | None) -> str:
    """The local clock against the server's, as the last answer measured it."""
    if ms is None:
        return "unknown (no answer from the API yet)"
    return f"{-ms / 1000:+.3f} s (this machine's clock against the server's)"


@app.command()
def version() -> None:
    """Print the agent's version."""
    console.print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
