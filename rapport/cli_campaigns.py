"""`rapport campaigns list|show ID|watch ID`: a tenant's email campaigns through the API
with its key (email:read): the table of campaigns, one campaign's progress and stats,
and a live progress bar of sent/total until the campaign is sent or cancelled."""
from __future__ import annotations

import json
import time
from typing import Optional

import typer
from rich.console import Console

campaigns_app = typer.Typer(help="A tenant's email campaigns, through the API with its key (email:read).",
                            no_args_is_help=True)
ApiOpt = typer.Option(None, "--api", envvar="RAPPORT_API_URL", show_envvar=True,
                      help="the API's URL, e.g. http://127.0.0.1:8000/v1 (`rapport dev` prints it)")
KeyOpt = typer.Option(None, "--key", envvar="RAPPORT_API_KEY", show_envvar=True,
                      help="an API key with the email:read scope")
FINISHED = ("sent", "cancelled")
STATUS_STYLE = {"draft": "dim", "scheduled": "cyan", "sending": "yellow", "paused": "magenta",
                "sent": "green", "cancelled": "red"}


def _api(api_url: Optional[str], key: Optional[str], out: Console):
    from rapport.cli import _Api

    return _Api(api_url, key, out)


def _pages(api) -> list[dict]:
    out, cursor = [], None
    while True:
        page = api.call("GET", "/v1/email/campaigns", 200, params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        out += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def _status(c: dict) -> str:
    return f"[{STATUS_STYLE.get(c['status'], '')}]{c['status']}[/]"


@campaigns_app.command("list")
def campaigns_list(as_json: bool = typer.Option(False, "--json", help="print JSON"),
                   api_url: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt) -> None:
    """The tenant's campaigns: name, status, sent of total."""
    from rich.table import Table

    out = Console()
    campaigns = _pages(_api(api_url, key, out))
    if as_json:
        print(json.dumps(campaigns))
        return
    table = Table("id", "name", "status")
    for name in ("sent", "total", "skipped"):
        table.add_column(name, justify="right")
    for c in campaigns:
        p = c["progress"]
        table.add_row(c["id"], c["name"], _status(c), f"{p['sent']:,}", f"{p['total']:,}", f"{p['skipped']:,}")
    out.print(table if campaigns else "No campaigns.")


@campaigns_app.command("show")
def campaigns_show(campaign_id: str = typer.Argument(..., help="a campaign id (cmp_…)"),
                   as_json: bool = typer.Option(False, "--json", help="print JSON"),
                   api_url: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt) -> None:
    """A campaign: state, progress (sent, total, rate, skipped, failed, deferred) and stats."""
    out = Console()
    c = _api(api_url, key, out).call("GET", f"/v1/email/campaigns/{campaign_id}", 200)
    if as_json:
        print(json.dumps(c))
        return
    p, s = c["progress"], c["stats"]
    out.print(f"[bold]{c['name']}[/bold] ({c['id']})  {_status(c)}")
    out.print(f"Template {c['template_id']}  Segment {c['segment_id']}  Sender {c['sender'] or '(default)'}")
    if c.get("send_at"):
        out.print(f"Send at {c['send_at']}")
    out.print(f"Sent [bold]{p['sent']:,}[/bold] of {p['total']:,}{'' if p['resolved'] else '+'} at {p['rate']}/s;"
              f" skipped {p['skipped']:,}, failed {p['failed']:,}, deferred {p['deferred']:,}")
    out.print("Delivered {delivered:,}  bounced {bounced:,}  complained {complained:,}  opened {opened:,}  "
              "clicked {clicked:,}  unsubscribed {unsubscribed:,}".format(**s))


@campaigns_app.command("watch")
def campaigns_watch(campaign_id: str = typer.Argument(..., help="a campaign id (cmp_…)"),
                    interval: float = typer.Option(1.0, "--interval", min=0.1, help="seconds between polls"),
                    timeout: float = typer.Option(3600.0, "--timeout", min=1, help="stop watching after this long"),
                    api_url: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt) -> None:
    """A progress bar of sent (and skipped, failed) of total, polling the campaign until
    it is sent or cancelled; exit 1 if it was cancelled or the timeout came first."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = Console()
    api = _api(api_url, key, out)
    deadline = time.monotonic() + timeout
    c = api.call("GET", f"/v1/email/campaigns/{campaign_id}", 200)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task(c["name"], total=None, detail="")
        while True:
            p = c["progress"]
            done = p["sent"] + p["skipped"] + p["failed"]
            bar.update(task, completed=done, total=max(p["total"], done) if p["resolved"] or p["total"] else None,
                       detail=f"{c['status']}  sent {p['sent']:,}  skipped {p['skipped']:,}  failed {p['failed']:,}"
                              f"  deferred {p['deferred']:,}  {p['rate']}/s")
            if c["status"] in FINISHED or time.monotonic() > deadline:
                break
            time.sleep(interval)
            c = api.call("GET", f"/v1/email/campaigns/{campaign_id}", 200)
    p = c["progress"]
    out.print(f"{c['name']}: {c['status']}; sent {p['sent']:,} of {p['total']:,}")
    if c["status"] != "sent":
        raise typer.Exit(1)
