"""20 redemptions at once against the running stack (the Chalice app over HTTP on the
emulator): together they ask for more than the balance. Exactly the affordable ones
succeed, the rest get 422 with what is available, and the balance never goes negative."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor


def test_parallel_redemptions_never_overspend(tenant):
    cid = tenant.create_customer(email="rush@example.com")["id"]
    r = tenant.http.post(f"/v1/customers/{cid}/loyalty/adjustments",
                         json={"points": 1000, "reason": "launch gift"})
    assert r.status_code == 201, r.text

    def attempt(i: int):
        import httpx

        # as a careful client does: a request lost on the network is retried with the
        # same Idempotency-Key, which can never redeem twice
        # (and one still in flight answers 409 idempotency_in_progress: wait and ask again)
        for tries in range(20):
            try:
                with httpx.Client(base_url=str(tenant.http.base_url), headers=tenant.http.headers,
                                  timeout=60) as c:
                    r = c.post(f"/v1/customers/{cid}/loyalty/redemptions", json={"points": 75},
                               headers={"Idempotency-Key": f"rush-{i}"})
                if r.status_code != 409 or r.json()["code"] != "idempotency_in_progress":
                    return r
            except httpx.TransportError:
                if tries >= 2:
                    raise
            time.sleep(0.25)
        return r

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(attempt, range(20)))
    # a retried redemption that had gone through is replayed (201, Idempotent-Replayed)
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 13 + [422] * 7, [a.text for a in answers if a.status_code not in (201, 422)]
    for a in answers:
        if a.status_code == 422:
            assert a.json()["code"] == "insufficient_points" and 0 <= a.json()["available"] < 75
        else:
            assert a.json()["balance"]["available"] >= 0
    view = tenant.http.get(f"/v1/customers/{cid}/loyalty").json()
    assert view["available"] == 1000 - 13 * 75
    ledger = tenant.http.get(f"/v1/customers/{cid}/loyalty/ledger", params={"limit": 100}).json()["data"]
    assert sorted(e["seq"] for e in ledger) == list(range(1, 15))
    assert sum(e["points"] for e in ledger) == view["available"]
    # each successful answer saw a different balance: no two redemptions read the same one
    seen = [a.json()["balance"]["available"] for a in answers if a.status_code == 201]
    assert sorted(seen) == [1000 - 75 * k for k in range(13, 0, -1)]
