"""`rapport import` and `rapport sync` against the served stack (the API over HTTP, the sync
queue's consumer running): what the user sees (mapping, progress, counts, rejected rows)
and the exit codes scripts rely on (0 succeeded, 1 the run failed, 2 a usage error)."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from rapport.cli import app
from tests.fakes.acme import AcmeServer
from tests.plan_helpers import set_plan

ENV = {"COLUMNS": "200", "RAPPORT_API_URL": "", "RAPPORT_API_KEY": ""}


@pytest.fixture()
def cli():
    runner = CliRunner()

    def invoke(*args: str, env: dict | None = None):
        result = runner.invoke(app, list(args), env={**ENV, **(env or {})})
        result.text = " ".join(result.output.split())  # messages as one line, however the console wrapped them
        return result
    return invoke


def write_csv(path, rows: int = 30, bad_byte_at: int | None = None):
    lines = ["Id,E-mail,First name,Last name,Notes"]
    for i in range(1, rows + 1):
        email = f"cli{i}@example.com"
        ident = f"K{i}"
        if i == 5:
            email = "cli5.example.com"       # row 6: bad email
        if i == 9:
            ident = email = ""                # row 10: nothing identifies it
        lines.append(f"{ident},{email},Name{i},Family{i},note {i}")
    data = ("\n".join(lines) + "\n").encode()
    if bad_byte_at is not None:  # a latin-1 byte in the middle: not UTF-8
        data = data.replace(f"Name{bad_byte_at},".encode(), f"Nam\xe9{bad_byte_at},".encode("latin-1"))
    path.write_bytes(data)
    return path


def counts_row(output: str, stream: str = "customers") -> list[int]:
    """The numbers of a stream's row in the summary table."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line) if c.strip()]
        if cells and cells[0] == stream and all(c.isdigit() for c in cells[1:]) and len(cells) == 7:
            return [int(c) for c in cells[1:]]
    raise AssertionError(f"no counts for {stream} in:\n{output}")


def lookup(tenant, **params) -> list[dict]:
    return tenant.http.get("/v1/customers/lookup", params=params).json()["data"]


def test_import_guesses_the_mapping_uploads_syncs_and_reports_rejected_rows(
        cli, tenant, api_url, event_pipeline, tmp_path):
    path = write_csv(tmp_path / "customers.csv")
    result = cli("import", str(path), "--api", f"{api_url}/v1", "--key", tenant.key, "--source", "legacy")
    out = result.output
    assert result.exit_code == 0, out
    # the mapping it guessed, printed before anything is written
    for column, target in [("Id", "external_id"), ("E-mail", "email"), ("First name", "name.given"),
                           ("Last name", "name.family")]:
        assert re.search(rf"{re.escape(column)}\s*│\s*{re.escape(target)}", out), out
    assert "Notes" not in out.split("Created connection")[0]
    cid = re.search(r"Created connection (con_\w+)", out).group(1)
    assert re.search(r"customers\s.*30/30", out), out          # the progress bar, at its end
    assert counts_row(out) == [30, 28, 0, 0, 2, 0]              # read created updated unchanged rejected conflicts
    assert "Rejected records (2)" in out
    assert re.search(r"row 6\s*│\s*customers\s*│\s*column E-mail: not a valid email address", out), out
    assert re.search(r"row 10\s*│\s*customers\s*│\s*no email, phone or external id", out), out
    assert "succeeded" in out
    [one] = lookup(tenant, email="cli1@example.com")
    assert one["name"] == {"given": "Name1", "family": "Family1"} and one["external_ids"] == {"legacy": "K1"}

    # again into the same connection, key and URL from the environment: nothing changes
    again = cli("import", str(path), "--connection", cid,
                env={"RAPPORT_API_URL": api_url, "RAPPORT_API_KEY": tenant.key})
    assert again.exit_code == 0, again.output
    assert counts_row(again.output) == [30, 0, 0, 28, 2, 0]
    assert "Created connection" not in again.output


def test_import_exit_codes_for_usage_errors_and_a_failed_run(cli, tenant, api_url, event_pipeline, tmp_path):
    path = write_csv(tmp_path / "customers.csv")
    api = ["--api", api_url, "--key", tenant.key]
    r = cli("import", str(path), "--map", "Mail=email", *api)
    assert r.exit_code == 2 and "has no column 'Mail'" in r.text, r.output
    r = cli("import", str(path), "--map", "E-mail=emial", *api)
    assert r.exit_code == 2 and "'emial' is not a customer field" in r.text, r.output
    r = cli("import", str(path), "--map", "First name=name.given", *api)
    assert r.exit_code == 2 and "email, phone or external_id" in r.text, r.output
    r = cli("import", str(path), "--api", api_url)
    assert r.exit_code == 2 and "--key" in r.text
    r = cli("import", str(tmp_path / "missing.csv"), *api)
    assert r.exit_code == 2
    r = cli("import", str(path), "--key", "rk_wrong", "--api", api_url)
    assert r.exit_code == 2 and "401" in r.text
    assert tenant.http.get("/v1/connections").json()["data"] == []  # none of these created anything
    # the header reads fine but row 13 is not UTF-8: the run fails and says where
    bad = write_csv(tmp_path / "latin.csv", bad_byte_at=12)
    r = cli("import", str(bad), "--encoding", "utf-8", *api)
    assert r.exit_code == 1, r.output
    assert "failed" in r.text and "not valid utf-8 at line 13" in r.text
    assert lookup(tenant, email="cli1@example.com") == []


def test_sync_shows_progress_and_fails_with_the_run(cli, tenant, api_url, event_pipeline):
    set_plan(tenant, "starter")  # more connections (or customers) than free allows
    api = ["--api", api_url, "--key", tenant.key]
    with AcmeServer() as acme:
        for i in range(120):
            acme.put(f"c{i:04d}", f"2026-01-01T00:00:{i % 60:02d}Z", email=f"acme{i}@example.com",
                     first=f"A{i}", last="Acme", labels=[])
        conn = tenant.http.post("/v1/connections", json={
            "connector": "acme", "name": "Acme", "config": {"base_url": acme.url, "api_token": acme.token}}).json()
        r = cli("sync", conn["id"], "--mode", "backfill", *api)
        assert r.exit_code == 0, r.output
        assert re.search(r"customers\s.*120/120", r.output), r.output
        assert counts_row(r.output) == [120, 120, 0, 0, 0, 0], r.output
        assert "Rejected records" not in r.output

        tenant.http.patch(f"/v1/connections/{conn['id']}", json={"config": {"api_token": "revoked"}})
        r = cli("sync", conn["id"], *api)
        assert r.exit_code == 1, r.output
        assert "failed" in r.text and "401" in r.text
    r = cli("sync", conn["id"], "--mode", "sideways", *api)
    assert r.exit_code == 2
    r = cli("sync", "con_01J00000000000000000000000", *api)
    assert r.exit_code == 2 and "404" in r.text
    # a csv connection imports an upload: without one the API refuses the sync
    csv_conn = tenant.http.post("/v1/connections", json={
        "connector": "csv", "name": "x", "config": {"mapping": {"E-mail": "email"}}}).json()
    r = cli("sync", csv_conn["id"], "--mode", "backfill", *api)
    assert r.exit_code == 2 and "upload_id" in r.text


def test_sync_prints_each_state_change_and_the_classified_error(cli, tenant, api_url, event_pipeline, raw_table):
    """Issue 9: with a config that cannot work (the README's placeholder shop URL, stored
    before save-time validation), `rapport sync` printed "queued", "running", then nothing
    for an hour. Now the run ends failed, classified, and the command says so and exits 1."""
    import json as _json

    from tests.fakes.shopify import FakeShopify

    with FakeShopify() as shop:
        conn = tenant.http.post("/v1/connections", json={
            "connector": "shopify", "name": "placeholder",
            "config": {"shop_url": shop.url, "access_token": shop.token}}).json()
    key = {"pk": f"T#{tenant.id}#CONN#{conn['id']}", "sk": "CONN"}
    item = raw_table.get_item(Key=key, ConsistentRead=True)["Item"]
    raw_table.update_item(Key=key, UpdateExpression="SET config = :c, version = version + :one",
                          ExpressionAttributeValues={":one": 1, ":c": _json.dumps(
                              {**_json.loads(item["config"]), "shop_url": "https://….myshopify.com"})})
    r = cli("sync", conn["id"], "--mode", "backfill", "--timeout", "60", "--api", api_url, "--key", tenant.key)
    assert r.exit_code == 1, r.output
    assert re.search(r"run run_\w+: queued", r.text), r.output
    assert re.search(r"run run_\w+: failed \(config\)", r.text), r.output
    assert "config.shop_url" in r.text and "still" not in r.text, r.output
    got = tenant.http.get(f"/v1/connections/{conn['id']}").json()
    assert got["active_run"] is None and got["last_error"]["code"] == "config"


def test_import_reuses_the_connection_it_created_for_the_same_file_name(cli, tenant, api_url, event_pipeline,
                                                                         tmp_path):
    set_plan(tenant, "starter")  # more connections (or customers) than free allows
    api = ["--api", api_url, "--key", tenant.key]
    path = write_csv(tmp_path / "members.csv", rows=12)
    first = cli("import", str(path), "--source", "legacy", *api)
    assert first.exit_code == 0, first.output
    cid = re.search(r"Created connection (con_\w+)", first.output).group(1)
    again = cli("import", str(path), *api)  # the same file name, no --connection
    assert again.exit_code == 0, again.output
    assert "Created connection" not in again.output and f"Using connection {cid}" in again.text, again.output
    assert counts_row(again.output)[1] == 0  # nothing created twice: the same source, the same customers
    [one] = lookup(tenant, email="cli1@example.com")
    assert one["external_ids"] == {"legacy": "K1"}
    other = cli("import", str(write_csv(tmp_path / "other.csv", rows=3)), *api)
    assert other.exit_code == 0 and "Created connection" in other.output, other.output
    names = sorted(c["name"] for c in tenant.http.get("/v1/connections").json()["data"])
    assert names == ["CSV import: members.csv", "CSV import: other.csv"]
