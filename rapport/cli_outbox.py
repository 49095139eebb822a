"""`rapport outbox`: the latest emails the running `rapport dev` sent (its emulator's SES),
read from the dev server's ``GET /_dev/outbox`` (rapport/outbox.py)."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)


def outbox(limit: int = typer.Option(10, "--limit", min=1, help="how many of the latest emails"),
           as_json: bool = typer.Option(False, "--json", help="print JSON (a list, newest first)"),
           api_url: str = typer.Option("http://127.0.0.1:8000", "--api", "--api-url", envvar="RAPPORT_API_URL",
                                       help="the running `rapport dev` (the 'Rapport API' URL it prints)")) -> None:
    """The latest emails sent through the local stack (rapport dev only), newest first."""
    import httpx

    base = api_url.rstrip("/").removesuffix("/v1")
    try:
        r = httpx.get(f"{base}/_dev/outbox", params={"limit": limit}, headers={"Accept": "application/json"},
                      timeout=30)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach {base}: {exc}. Is `rapport dev` running? (pass --api-url)")
        raise typer.Exit(1) from None
    if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
        err.print(f"[red]error:[/red] {base}/_dev/outbox answered {r.status_code}: is it `rapport dev`?")
        raise typer.Exit(1)
    emails = r.json()
    if as_json:
        print(json.dumps(emails))
        return
    if not emails:
        console.print("No email sent yet.")
        return
    table = Table(title=f"Outbox: the latest {len(emails)} email(s), newest first")
    for column in ("Sent", "To", "From", "Subject", "Ref", "One-click"):
        table.add_column(column, overflow="fold")
    for m in emails:
        headers = m.get("headers") or {}
        one_click = "yes" if "List-Unsubscribe-Post" in headers else "-"
        table.add_row(m.get("sent_at") or "-", ", ".join(m.get("to") or []), m.get("from") or "",
                      m.get("subject") or "", headers.get("X-Rapport-Ref", "-"), one_click)
    console.print(table)
