"""Webhook intake: signatures verified on raw bytes (S-8), forged deliveries refused with 401, genuine
ones recorded once (F-WEBHOOK) and turned into refresh runs by the sensor, never into ledger rows."""

from __future__ import annotations

import json
import uuid

import dagster as dg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.lib.webhooks import (
    SQUARE_PATH,
    WebhookConfig,
    shopify_signature,
    square_signature,
    start_webhook_server,
    verify_shopify,
    verify_square,
)

URL = "https://sync.example.com/webhooks/square"
secrets = st.text(min_size=1, max_size=40)
bodies = st.binary(min_size=1, max_size=300)


def flip(data: bytes, index: int, bit: int) -> bytes:
    i = index % len(data)
    return data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1:]


@given(secret=secrets, body=bodies, index=st.integers(min_value=0), bit=st.integers(0, 7))
def test_shopify_genuine_passes_and_any_flipped_byte_fails(secret, body, index, bit):
    header = shopify_signature(secret, body)
    assert verify_shopify([secret], body, header)
    assert not verify_shopify([secret], flip(body, index, bit), header)
    raw = header.encode()
    assert not verify_shopify([secret], body, flip(raw, index, bit).decode("latin-1"))
    assert not verify_shopify([secret], body, None) and not verify_shopify([secret], body, "")


@given(key=secrets, body=bodies, index=st.integers(min_value=0), bit=st.integers(0, 7))
def test_square_genuine_passes_and_any_flipped_byte_of_body_or_url_fails(key, body, index, bit):
    header = square_signature(key, URL, body)
    assert verify_square([key], URL, body, header)
    assert not verify_square([key], URL, flip(body, index, bit), header)
    assert not verify_square([key], flip(URL.encode(), index, bit).decode("latin-1"), body, header)
    assert not verify_square([key], URL, body, None)


def test_reserialized_body_fails_and_rotation_accepts_both_secrets():
    body = b'{"inventory_item_id": 1,  "available": 5}'
    header = shopify_signature("old", body)
    assert not verify_shopify(["old"], json.dumps(json.loads(body)).encode(), header)
    assert verify_shopify(["new", "old"], body, header)
    assert not verify_shopify([], body, header)


@pytest.fixture
def intake(sync_warehouse):
    config = WebhookConfig(lambda: sync_warehouse.connect("loader"), ("shp-secret",), ("sq-key",), URL)
    server = start_webhook_server(config)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_endpoint_records_genuine_deliveries_once_and_refuses_forgeries(intake, sync_warehouse, caplog):
    event = f"evt-{uuid.uuid4().hex}"
    body = json.dumps({"inventory_item_id": 808, "location_id": 9, "available": 3}).encode()
    headers = {"X-Shopify-Topic": "inventory_levels/update", "X-Shopify-Event-Id": event,
               "X-Shopify-Hmac-SHA256": shopify_signature("shp-secret", body)}
    assert httpx.post(f"{intake}/webhooks/shopify", content=body, headers=headers).json() == {"status": "accepted"}
    assert httpx.post(f"{intake}/webhooks/shopify", content=body, headers=headers).json() == {"status": "duplicate"}
    forged = httpx.post(f"{intake}/webhooks/shopify", content=body.replace(b"3", b"9"), headers=headers)
    assert forged.status_code == 401
    unsigned = httpx.post(f"{intake}/webhooks/shopify", content=body,
                          headers={k: v for k, v in headers.items() if "Hmac" not in k})
    assert unsigned.status_code == 401
    assert "808" not in caplog.text  # bodies are never logged

    sq_event = f"sq-{uuid.uuid4().hex}"
    sq_body = json.dumps({"type": "inventory.count.updated", "event_id": sq_event, "data": {}}).encode()
    ok = httpx.post(f"{intake}{SQUARE_PATH}", content=sq_body,
                    headers={"x-square-hmacsha256-signature": square_signature("sq-key", URL, sq_body)})
    assert ok.json() == {"status": "accepted"}
    wrong_url = httpx.post(f"{intake}{SQUARE_PATH}", content=sq_body, headers={
        "x-square-hmacsha256-signature": square_signature("sq-key", "https://other.example/hook", sq_body)})
    assert wrong_url.status_code == 401
    with sync_warehouse.connect("loader") as conn:
        rows = conn.execute("select channel, event_id from ops.webhook_events where event_id = any(%s)",
                            ([event, sq_event],)).fetchall()
    assert sorted(rows) == [("shopify", event), ("square", sq_event)]


def test_webhook_sensor_requests_refresh_runs_deterministically(intake, sims, session_settings, tmp_path, monkeypatch):
    from orchestration.defs.sync.factory import build_sync_definitions
    from orchestration.lib.registry import load_registry

    from .test_orchestration import resources, write_registry

    names = {"shopify": "shopify"}
    defs = build_sync_definitions(load_registry(write_registry(tmp_path, sims, names, monkeypatch)))
    sensor = next(s for s in defs.sensors if s.name == "webhook_events_sensor")
    body = b'{"inventory_item_id": 1}'
    httpx.post(f"{intake}/webhooks/shopify", content=body, headers={
        "X-Shopify-Event-Id": uuid.uuid4().hex, "X-Shopify-Hmac-SHA256": shopify_signature("shp-secret", body)})
    res = resources(session_settings, sims, names)
    with dg.instance_for_test() as instance:
        a = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=res))
        b = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=res))
        assert [r.run_key for r in a.run_requests] == [r.run_key for r in b.run_requests]
        assert [r.job_name for r in a.run_requests] == ["refresh_shopify_job"]
        after = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=a.cursor, resources=res))
        assert not after.run_requests
