"""The README's API tour must not borrow a vendor's sample ids: its customer and order were
Shopify's own sample ids (207119551, 450789469), so connecting a sample shop rewrote the
tour's customer into another person. Every id, email and phone the tour writes must appear
in no vendor payload of the shared fixtures (which the vendor fakes replay)."""
from __future__ import annotations

import re
from pathlib import Path

from tests.fakes import FIXTURES

README = Path(__file__).resolve().parents[2] / "README.md"


def _tour() -> str:
    text = README.read_text()
    start = text.index("## A short API tour")
    return text[start:text.index("\n## ", start + 1)]


def _identities(tour: str) -> set[str]:
    found = set(re.findall(r'"external_id"\s*:\s*"([^"]+)"', tour))
    for block in re.findall(r'"external_ids"\s*:\s*\{([^}]*)\}', tour):
        found |= set(re.findall(r':\s*"([^"]+)"', block))
    found |= {e.lower() for e in re.findall(r'"email"\s*:\s*"([^"]+)"', tour)}
    found |= {re.sub(r"\D", "", p) for p in re.findall(r'"phone"\s*:\s*"([^"]+)"', tour)}
    return {v for v in found if "…" not in v}


def test_the_tour_uses_no_vendor_sample_id():
    ids = _identities(_tour())
    assert len(ids) >= 4, ids  # the customer's external id, email, phone, the order's id
    assert FIXTURES.is_dir(), FIXTURES
    hits = {}
    for path in FIXTURES.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="ignore")
            digits = re.sub(r"\D", "", text)
            for value in ids:
                if value in text or value.lower() in text.lower() or (value.isdigit() and len(value) > 8
                                                                       and value in digits):
                    hits.setdefault(value, []).append(str(path.relative_to(FIXTURES)))
    assert not hits, hits
