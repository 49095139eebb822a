"""The dev outbox in a real browser: `rapport dev` as a subprocess, an email sent through
its emulator's SES as the sender sends one (raw MIME with the one-click unsubscribe
headers), then ``GET /_dev/outbox`` opened in Debian's headless chromium (playwright):
the subject, the recipient and the List-Unsubscribe header are visible, the HTML part is
rendered inside the sandboxed iframe, and a screenshot is a PNG of sensible size that is
not blank. `rapport outbox` prints the same email. (.ci/run installs chromium.)"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import time
import zlib
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_dev_stack import RAPPORT, DevProcess, _env

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SUBJECT = "Spring sale: 20% off for Ann"


@pytest.fixture(scope="module")
def dev():
    stack = DevProcess("--no-seed")
    yield stack
    stack.stop()


def _send(dev) -> str:
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    endpoint = dev.info["AWS endpoint (emulator)"]
    sender = "hello@t0e2eoutbox01.example.test"
    session.client("ses", endpoint_url=endpoint).verify_email_identity(EmailAddress=sender)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = f"Acme <{sender}>", "ann@example.com", SUBJECT
    msg["List-Unsubscribe"] = f"<{dev.base}/v1/unsubscribe/e2e-token>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Rapport-Ref"] = "cmp_01ARZ3NDEKTSV4RRFFQ69G5FAV"
    msg.set_content("Spring sale for Ann. Unsubscribe: " + msg["List-Unsubscribe"])
    msg.add_alternative(
        '<html><body style="margin:0"><div style="background:#0f766e;color:#ffffff;padding:40px;'
        'font:bold 32px sans-serif">Spring sale for Ann</div><p id="offer" style="padding:20px;font:18px serif">'
        "20% off everything this week.</p><script>document.title='pwned'</script></body></html>",
        subtype="html")
    return session.client("sesv2", endpoint_url=endpoint).send_email(
        FromEmailAddress=sender, Destination={"ToAddresses": ["ann@example.com"]},
        Content={"Raw": {"Data": msg.as_bytes()}})["MessageId"]


def _png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGBA/RGB pixels): a minimal PNG decoder (8-bit, no interlace)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[x:x + 3]) for r in rows for x in range(0, stride, bpp)]


def test_the_outbox_page_shows_the_email_rendered_in_a_browser(dev, tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium (.ci/run does)"
    message_id = _send(dev)
    deadline = time.monotonic() + 30
    while not (listed := httpx.get(f"{dev.base}/_dev/outbox", headers={"Accept": "application/json"}).json()):
        assert time.monotonic() < deadline, "the outbox stayed empty"
        time.sleep(0.2)
    [mail] = listed
    assert mail["id"] == message_id and mail["subject"] == SUBJECT and mail["to"] == ["ann@example.com"]
    assert set(mail) >= {"to", "from", "subject", "headers", "html", "text", "sent_at"}
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Spring sale for Ann" in mail["html"] and "Spring sale for Ann" in mail["text"]

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1024, "height": 900})
            response = page.goto(f"{dev.base}/_dev/outbox")
            assert response.status == 200 and response.headers["content-type"].startswith("text/html")
            body = page.locator("body")
            assert SUBJECT in body.inner_text()
            assert "ann@example.com" in body.inner_text()
            assert f"{dev.base}/v1/unsubscribe/e2e-token" in body.inner_text()  # List-Unsubscribe, visible
            frame = page.locator("iframe")
            assert frame.count() == 1 and frame.get_attribute("sandbox") == ""
            inside = page.frame_locator("iframe")
            assert inside.locator("div").first.inner_text() == "Spring sale for Ann"
            assert inside.locator("#offer").is_visible()
            assert page.title() == "Outbox (1)"  # the email's script ran nowhere
            shot = tmp_path / "outbox.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    width, height, pixels = _png(shot.read_bytes())
    assert 1000 <= width <= 1100 and 600 <= height <= 4000, (width, height)
    colours = {}
    for px in pixels[:: max(1, len(pixels) // 50_000)]:
        colours[px] = colours.get(px, 0) + 1
    background = max(colours.values()) / sum(colours.values())
    assert len(colours) > 20 and background < 0.95, "the screenshot is (almost) blank"
    assert bytes((0x0F, 0x76, 0x6E)) in colours, "the email's own colours were rendered inside the iframe"

    printed = subprocess.run([RAPPORT, "outbox", "--json", "--api-url", dev.info["Rapport API"]],
                             capture_output=True, text=True, env=_env(), timeout=60, check=True)
    assert [m["subject"] for m in json.loads(printed.stdout)] == [SUBJECT]
    table = subprocess.run([RAPPORT, "outbox", "--limit", "5", "--api", dev.base],
                           capture_output=True, text=True, env={**_env(), "COLUMNS": "200"}, timeout=60, check=True)
    assert "Spring sale" in table.stdout and "ann@example.com" in table.stdout and "cmp_01ARZ" in table.stdout
    assert os.path.getsize(shot) > 10_000
