"""Shipments' pure rules: the providers' statuses mapped to Rapport's, checkpoints kept
once and ordered by when they happened, the order's stamps, and both providers'
webhook signatures (EasyPost's against its own golden vector)."""
from __future__ import annotations

import json

import pytest

from tests.fakes import FIXTURES


def test_easypost_statuses_map_to_rapport_statuses():
    from connectors.easypost import mapping

    expected = {"pre_transit": "pre_transit", "in_transit": "in_transit", "out_for_delivery": "out_for_delivery",
                "delivered": "delivered", "available_for_pickup": "available_for_pickup",
                "return_to_sender": "return_to_sender", "failure": "failure", "cancelled": "failure",
                "error": "exception", "unknown": "pre_transit"}
    assert {k: mapping.status(k) for k in expected} == expected
    assert mapping.status("something_new") == "pre_transit" and mapping.status(None) == "pre_transit"


def test_aftership_tags_map_to_rapport_statuses():
    from connectors.aftership import mapping

    expected = {"Pending": "pre_transit", "InfoReceived": "pre_transit", "InTransit": "in_transit",
                "OutForDelivery": "out_for_delivery", "AttemptFail": "exception", "Delivered": "delivered",
                "AvailableForPickup": "available_for_pickup", "Exception": "exception", "Expired": "failure"}
    assert {k: mapping.status(k) for k in expected} == expected
    assert mapping.status("InTransit", returning=True) == "return_to_sender"
    assert mapping.status("Delivered", returning=True) == "delivered"  # back at the sender: delivered there


def test_every_mapped_status_is_one_of_rapports():
    from connectors.aftership import mapping as aftership
    from connectors.easypost import mapping as easypost
    from connectors.sdk.base import SHIPMENT_STATUSES
    from crm.shipments import status

    assert set(easypost.STATUSES.values()) | set(aftership.TAGS.values()) <= set(SHIPMENT_STATUSES)
    assert tuple(status.STATUSES) == SHIPMENT_STATUSES


def test_easypost_golden_vector_verifies_and_a_change_does_not():
    """EasyPost's own vector: the secret "sécret" (precomposed é, NFKD-normalised) over
    the event body without the file's final newline."""
    from connectors.easypost import EasyPost, EasyPostConfig
    from connectors.sdk.errors import WebhookRejected

    vector = json.loads((FIXTURES / "easypost" / "webhook_hmac_vector.json").read_text())
    body = (FIXTURES / "easypost" / "event-body_tracker.updated.json").read_bytes()[:-1]
    config = EasyPostConfig(api_key="EZAK_x", webhook_secret=vector["secret"])
    headers = {"x-hmac-signature": vector["hmac_signature"]}
    EasyPost().verify_webhook(config, headers, body)
    for bad_headers, bad_body in (({}, body), (headers, body + b" "), ({"x-hmac-signature": "hmac-sha256-hex=00"}, body)):
        with pytest.raises(WebhookRejected):
            EasyPost().verify_webhook(config, bad_headers, bad_body)
    not_normalised = EasyPostConfig(api_key="EZAK_x", webhook_secret="se\u0301cret")  # already NFKD: same key
    EasyPost().verify_webhook(not_normalised, headers, body)
    with pytest.raises(WebhookRejected):
        EasyPost().verify_webhook(EasyPostConfig(api_key="EZAK_x", webhook_secret="secret"), headers, body)


def test_easypost_event_maps_to_a_shipment_record_with_its_event_id():
    from connectors.easypost import EasyPost, EasyPostConfig

    body = (FIXTURES / "easypost" / "event-body_tracker.updated.json").read_bytes()[:-1]
    delivery = EasyPost().parse_webhook(EasyPostConfig(api_key="k"), {}, body)
    [record] = delivery.records
    assert delivery.delivery_id == "easypost:evt_1" and record.event_id == "evt_1"
    assert record.tracking_number == "1" and record.carrier == "FedEx" and record.status == "in_transit"
    assert [cp.at for cp in record.checkpoints] == sorted(cp.at for cp in record.checkpoints)
    assert record.checkpoints[0].status == "pre_transit" and record.checkpoints[1].location == "ORLANDO, FL, 32809, US"


def test_aftership_checkpoints_are_in_utc_and_the_fixture_is_delivered():
    from connectors.aftership import mapping

    t = json.loads((FIXTURES / "aftership" / "tracking_response.json").read_text())
    record = mapping.tracking(mapping.unwrap(t))
    assert record.status == "delivered" and record.carrier == "fedex" and len(record.checkpoints) == 14
    assert record.checkpoints[0].at == "2018-07-23T06:21:39.000Z"  # 01:21:39-05:00
    assert record.checkpoints[1].at == "2018-07-23T08:58:00.000Z"  # 16:58:00+08:00
    assert [c.status for c in record.checkpoints][-2:] == ["out_for_delivery", "delivered"]


def test_aftership_signature_is_base64_hmac_of_the_body():
    from connectors.aftership import AfterShip, AfterShipConfig
    from connectors.sdk.errors import WebhookRejected
    from tests.fakes.aftership import sign

    config = AfterShipConfig(api_key="k", webhook_secret="whsec")
    body = b'{"event": "tracking_update", "event_id": "e1", "msg": {}}'
    AfterShip().verify_webhook(config, {"aftership-hmac-sha256": sign("whsec", body)}, body)
    with pytest.raises(WebhookRejected):
        AfterShip().verify_webhook(config, {"aftership-hmac-sha256": sign("other", body)}, body)
    assert AfterShip().webhook_delivery_id({}, body) == "aftership:e1"


def test_checkpoints_are_kept_once_and_ordered_by_when_they_happened():
    from crm.shipments import status

    a = {"at": "2025-01-01T10:00:00.000Z", "status": "pre_transit", "message": "label"}
    b = {"at": "2025-01-02T10:00:00.000Z", "status": "in_transit", "message": "picked up"}
    c = {"at": "2025-01-03T10:00:00.000Z", "status": "delivered", "message": "delivered"}
    kept = status.merge_checkpoints([], [c])  # the newest arrived first
    kept = status.merge_checkpoints(kept, [b, a])
    kept = status.merge_checkpoints(kept, [a, b, c])  # a replay adds nothing
    assert [cp["message"] for cp in kept] == ["label", "picked up", "delivered"]
    assert status.current(kept, "pre_transit", None) == ("delivered", c["at"])
    assert status.shipped_at(kept) == b["at"] and status.delivered_at(kept) == c["at"]
    keyed = status.merge_checkpoints(kept, [{**b, "key": "h1"}, {**b, "key": "h1", "message": "again"}])
    assert len(keyed) == 4  # a provider key counts, once


def test_an_order_is_delivered_when_every_parcel_is_and_stamps_never_go_back():
    from crm.shipments import status

    one = {"shipped_at": "2025-01-02T00:00:00.000Z", "delivered_at": "2025-01-03T00:00:00.000Z"}
    two = {"shipped_at": "2025-01-01T00:00:00.000Z", "delivered_at": None}
    assert status.order_stamps([one, two], None, None) == ("2025-01-01T00:00:00.000Z", None)
    done = {**two, "delivered_at": "2025-01-05T00:00:00.000Z"}
    assert status.order_stamps([one, done], None, None) == ("2025-01-01T00:00:00.000Z", "2025-01-05T00:00:00.000Z")
    # a parcel added later (not delivered) does not take the order's delivery back
    assert status.order_stamps([one, done, {"shipped_at": None}], "2025-01-01T00:00:00.000Z",
                               "2025-01-05T00:00:00.000Z")[1] == "2025-01-05T00:00:00.000Z"


def test_shipment_events_follow_the_status_by_checkpoint_time():
    from crm import events

    base = {"pk": "T#t000000000001#C#cus_1", "kind": "shipment", "shipment_id": "shp_A", "order_id": "ord_1",
            "customer_id": "cus_1", "carrier": "UPS", "tracking_number": "1Z", "checkpoints": [],
            "created_at": "2025-01-01T00:00:00.000Z", "updated_at": "2025-01-01T00:00:00.000Z",
            "status": "pre_transit", "status_at": "2025-01-01T00:00:00.000Z"}
    assert [e["id"] for e in events.derive(None, base)] == ["shipment.registered:shp_A"]
    moving = {**base, "status": "in_transit", "status_at": "2025-01-02T00:00:00.000Z",
              "updated_at": "2025-01-02T01:00:00.000Z"}
    assert [e["id"] for e in events.derive(base, moving)] == ["shipment.in_transit:shp_A:2025-01-02T00:00:00.000Z"]
    assert events.derive(moving, {**moving, "updated_at": "2025-01-03T00:00:00.000Z"}) == []  # nothing new
    assert events.derive(None, moving) == []  # a merge's copy of a shipment that had moved on
    assert {"shipment.registered", "shipment.delivered", "shipment.exception"} <= events.TYPES
