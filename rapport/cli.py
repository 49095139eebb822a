"""``rapport``: run the local stack and administer tenants.

Operator commands talk to DynamoDB directly (the emulator with --endpoint-url or
AWS_ENDPOINT_URL; AWS otherwise), never through a tenant's API key.
"""
from __future__ import annotations

import json
import signal
import threading
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(help="Rapport: a multi-tenant CRM backend.", no_args_is_help=True,
                  add_completion=False)
tenants_app = typer.Typer(help="Create and manage tenants (operator).", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
console = Console()
err = Console(stderr=True)

EndpointOpt = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                           help="AWS endpoint, e.g. the running dev stack's emulator URL")
TableOpt = typer.Option("rapport", "--table", envvar="RAPPORT_TABLE", help="DynamoDB table name")


@app.command()
def dev(port: int = typer.Option(8000, help="port of the API on 127.0.0.1"),
        endpoint_url: Optional[str] = typer.Option(
            None, "--endpoint-url", help="use this emulator (e.g. LocalStack) instead of starting moto"),
        table: str = TableOpt,
        seed: bool = typer.Option(True, "--seed/--no-seed", help="seed the demo tenant")) -> None:
    """Run Rapport locally: emulator, table, API and a demo tenant. Ctrl-C stops it."""
    from rapport.devstack import DevStack, PortInUse

    stack = DevStack(port, endpoint_url, table, seed)
    try:
        with console.status("Starting the emulator, creating the table, seeding the demo tenant…"):
            running = stack.start()
    except PortInUse as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    print(f"AWS endpoint (emulator): {running.endpoint_url}", flush=True)
    if running.tenant_id:
        print(f"Demo tenant: {running.tenant_id}", flush=True)
    print(f"Rapport API: {running.api_url}", flush=True)
    if running.api_key:
        print(f"Demo API key: {running.api_key}", flush=True)
    print(f"Table {running.table}. Emulator state is in memory: it is lost when this stops (Ctrl-C).",
          flush=True)
    if running.api_key:
        print(f"Try: curl -H 'Authorization: Bearer {running.api_key}' '{running.api_url}/customers?limit=3'",
              flush=True)
    stop = threading.Event()
    # Explicit handlers: a shell starts background jobs with SIGINT ignored, and
    # Python then never raises KeyboardInterrupt; Ctrl-C and kill must both stop us.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    console.print("Shutting down…")
    stack.stop()


@tenants_app.command("create")
def tenants_create(name: str, as_json: bool = typer.Option(False, "--json", help="print JSON"),
                   endpoint_url: Optional[str] = EndpointOpt, table: str = TableOpt) -> None:
    """Create a tenant and print its id and first admin API key (shown once)."""
    from rapport import env

    env.configure(endpoint_url, table)
    from crm import apikeys, tenants
    from crm.context import TenantContext
    from crm.errors import DomainError

    try:
        tenant = tenants.create(name)
    except DomainError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    key = apikeys.create(TenantContext(tenant.id), "admin", ["admin"])
    if as_json:
        print(json.dumps({"tenant_id": tenant.id, "api_key": key.secret}))
    else:
        console.print(f"Tenant: [bold]{tenant.id}[/bold] ({tenant.name})")
        console.print(f"Admin API key (shown once): [bold]{key.secret}[/bold]")


@tenants_app.command("list")
def tenants_list(endpoint_url: Optional[str] = EndpointOpt, table: str = TableOpt) -> None:
    """List tenants with their status and plan."""
    from rich.table import Table

    from rapport import env

    env.configure(endpoint_url, table)
    from crm import tenants

    out = Table("id", "name", "status", "plan", "created")
    for t in tenants.list_all():
        out.add_row(t.id, t.name, t.status, t.plan or "-", t.created_at)
    console.print(out)


def _set_status(tenant_id: str, status: str, endpoint_url: str | None, table: str) -> None:
    from rapport import env

    env.configure(endpoint_url, table)
    from crm import tenants
    from crm.context import TenantContext
    from crm.errors import DomainError

    try:
        tenant = tenants.set_status(TenantContext(tenant_id), status)
    except (DomainError, ValueError) as exc:
        err.print(f"[red]error:[/red] {getattr(exc, 'detail', exc)}")
        raise typer.Exit(2) from None
    console.print(f"{tenant.id} is now {tenant.status} (API keys see it within 60 s)")


@tenants_app.command("suspend")
def tenants_suspend(tenant_id: str, endpoint_url: Optional[str] = EndpointOpt,
                    table: str = TableOpt) -> None:
    """Suspend a tenant: every route answers 403."""
    _set_status(tenant_id, "suspended", endpoint_url, table)


@tenants_app.command("activate")
def tenants_activate(tenant_id: str, endpoint_url: Optional[str] = EndpointOpt,
                     table: str = TableOpt) -> None:
    """Re-activate a suspended tenant."""
    _set_status(tenant_id, "active", endpoint_url, table)


def main() -> None:
    app()
