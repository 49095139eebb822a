"""`rapport segments list|show` against the served stack, through the API with the tenant's
key: the table of segments (name, status or build progress, members), one segment with
its rule and a sample of members, and the RFM grid as a 5 x 5 table of counts with the
named segments; --json for scripts. Member items, the ``ready`` state and the grid counts
are written directly, as the build and maintenance (other parts of issue 12) write them."""
from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from rapport.cli import app
from tests.integration.test_segments_api import VIP, builds, put_members  # noqa: F401 (a fixture)

ENV = {"COLUMNS": "200", "RAPPORT_API_URL": "", "RAPPORT_API_KEY": ""}


@pytest.fixture()
def cli(api_url, tenant):
    runner = CliRunner()

    def invoke(*args: str, key: str | None = None):
        return runner.invoke(app, ["segments", *args, "--api", f"{api_url}/v1", "--key", key or tenant.key], env=ENV)
    return invoke


def grid_rows(output: str) -> dict[str, list[int]]:
    """R5..R1 -> the five counts of the row, as the table prints them."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line) if c.strip()]
        if cells and re.fullmatch(r"R[1-5]", cells[0]):
            rows[cells[0]] = [int(c.replace(",", "")) for c in cells[1:]]
    return rows


def test_list_and_show_a_segment(cli, tenant, builds, raw_table):  # noqa: F811
    from crm.segments import rfm
    from crm.storage import SegmentItem

    seg = tenant.http.post("/v1/segments", json={"name": "High rollers", "rule": VIP}).json()
    other = tenant.http.post("/v1/segments", json={"name": "Fresh", "rule": VIP}).json()
    members = [f"cus_01ARZ3NDEKTSV4RRFFQ69G5F{i:02d}" for i in range(10, 13)]
    put_members(tenant, seg["id"], members)
    SegmentItem.get(tenant.ctx.key("SEG", seg["id"]), "SEGMENT").update(actions=[
        SegmentItem.status.set("ready"), SegmentItem.member_count.set(3)])
    raw_table.put_item(Item={"pk": tenant.ctx.prefix, "sk": "RFM", "kind": "rfm_grid", "c55": 1234, "c12": 5})

    listed = cli("list")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if seg["id"] in line)
    assert "High rollers" in row and "ready" in row and re.search(r"\b3\b", row)
    row = next(line for line in listed.output.splitlines() if other["id"] in line)
    assert "building 0%" in row
    rows = grid_rows(listed.output)  # the grid below the table: R5 at the top
    assert list(rows) == ["R5", "R4", "R3", "R2", "R1"]
    assert rows["R5"] == [0, 0, 0, 0, 1234] and rows["R1"] == [0, 5, 0, 0, 0]
    assert rfm.named(5, 5) in listed.output

    shown = cli("show", seg["id"])
    assert shown.exit_code == 0, shown.output
    assert "High rollers" in shown.output and '"vip"' in shown.output and "Members: 3" in shown.output
    assert all(m in shown.output for m in members)
    as_json = json.loads(cli("show", seg["id"], "--json").stdout)
    assert as_json["segment"]["id"] == seg["id"] and [m["customer_id"] for m in as_json["members"]] == members
    assert json.loads(cli("list", "--json").stdout)["rfm"]["grid"][4][4] == 1234

    grid = cli("show", "rfm")
    assert grid.exit_code == 0 and grid_rows(grid.output)["R5"][4] == 1234 and "1,239 customers" in grid.output
    assert json.loads(cli("show", "rfm", "--json").stdout)["customers"] == 1239


def test_show_an_unknown_segment_or_without_the_scope_exits_2(cli, tenant):
    missing = cli("show", "seg_01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert missing.exit_code == 2 and "404" in missing.output
    denied = cli("list", key=tenant.key_with("customers:read"))
    assert denied.exit_code == 2 and "segments:read" in denied.output
