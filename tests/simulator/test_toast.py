"""Toast Stock API simulator, driven by a plain httpx client (Toast publishes no official Python SDK)."""

from __future__ import annotations

import httpx
import pytest

from simulator.channels.base import ChannelServer
from simulator.channels.toast import ToastApp

# One pooled client per module: a fresh httpx client per call costs ~30 ms of TLS setup.
HTTP = httpx.Client(timeout=10)


@pytest.fixture
def toast(sims, world):
    base = sims.base_urls["toast"]
    login = HTTP.post(
        f"{base}/authentication/v1/authentication/login",
        json={
            "clientId": "client",
            "clientSecret": "sim-toast-secret",
            "userAccessType": "TOAST_MACHINE_CLIENT",
        },
    )
    assert login.status_code == 200 and login.json()["status"] == "SUCCESS"
    token = login.json()["token"]["accessToken"]
    headers = {
        "Authorization": f"Bearer {token}",
        "Toast-Restaurant-External-ID": world.catalog.toast_restaurant,
    }
    with httpx.Client(base_url=base, headers=headers) as c:
        yield c


def test_login_rejects_bad_secret(sims):
    r = HTTP.post(
        f"{sims.base_urls['toast']}/authentication/v1/authentication/login",
        json={"clientId": "c", "clientSecret": "wrong", "userAccessType": "TOAST_MACHINE_CLIENT"},
    )
    assert r.status_code == 401
    assert set(r.json()) >= {
        "status",
        "code",
        "message",
        "messageKey",
        "fieldName",
        "link",
        "requestId",
        "developerMessage",
        "errors",
    }


def test_inventory_lists_only_quantity_and_out_of_stock(toast, world):
    items = toast.get("/stock/v1/inventory").json()
    assert isinstance(items, list)
    expected = {
        x.channel_sku: world.truth().get((x.sku, x.location), 0) for x in world.catalog.listings_for("toast")
    }
    assert {i["guid"] for i in items} == set(expected)
    for i in items:
        if i["status"] == "QUANTITY":
            assert i["quantity"] == float(expected[i["guid"]]) > 0
        else:
            assert i["status"] == "OUT_OF_STOCK" and i["quantity"] is None and expected[i["guid"]] == 0
    guid = items[0]["guid"]
    r = toast.put("/stock/v1/inventory/update", json=[{"guid": guid, "status": "IN_STOCK"}])
    assert r.status_code == 200 and r.json()[0]["status"] == "IN_STOCK"
    assert guid not in {i["guid"] for i in toast.get("/stock/v1/inventory").json()}
    found = toast.post("/stock/v1/inventory/search", json={"guids": [guid]}).json()
    assert [(f["guid"], f["status"], f["quantity"]) for f in found] == [(guid, "IN_STOCK", None)]
    quantity_only = toast.get("/stock/v1/inventory", params={"status": "QUANTITY"}).json()
    assert all(i["status"] == "QUANTITY" for i in quantity_only)


def test_update_is_all_or_nothing_and_validates_quantity(toast, world):
    guid = sorted(world.toast_items)[0]
    multi = world.catalog.toast_multi_location[guid]
    before = dict(world.toast_items[guid])
    r = toast.put(
        "/stock/v1/inventory/update",
        json=[
            {"guid": guid, "status": "QUANTITY", "quantity": 3.5},
            {"guid": "00000000-0000-4000-8000-000000000000", "status": "IN_STOCK"},
        ],
    )
    assert r.status_code == 400 and "00000000-0000-4000-8000-000000000000" in r.json()["message"]
    assert world.toast_items[guid]["quantity"] == before["quantity"]
    r = toast.put(
        "/stock/v1/inventory/update", json=[{"multiLocationId": multi, "status": "QUANTITY", "quantity": 0}]
    )
    assert r.status_code == 400
    r = toast.put(
        "/stock/v1/inventory/update",
        json=[{"multiLocationId": multi, "status": "QUANTITY", "quantity": 7.25}],
    )
    assert r.status_code == 200 and r.json() == [
        {
            "guid": guid,
            "itemGuidValidity": "VALID",
            "status": "QUANTITY",
            "quantity": 7.25,
            "multiLocationId": multi,
            "versionId": None,
        }
    ]


def test_restaurant_header_and_token_are_required(toast, sims):
    r = toast.get("/stock/v1/inventory", headers={"Toast-Restaurant-External-ID": ""})
    assert r.status_code == 400
    r = toast.get(
        "/stock/v1/inventory",
        headers={"Toast-Restaurant-External-ID": "11111111-1111-4111-8111-111111111111"},
    )
    assert r.status_code == 403
    r = HTTP.get(f"{sims.base_urls['toast']}/stock/v1/inventory", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["status"] == 401


def test_rate_limit_headers_and_429(world):
    server = ChannelServer(ToastApp(world, rate_per_second=2)).start()
    try:
        headers = {
            "Authorization": "Bearer sim-toast-token",
            "Toast-Restaurant-External-ID": world.catalog.toast_restaurant,
        }
        with httpx.Client(base_url=server.base_url, headers=headers) as c:
            replies = [c.get("/stock/v1/inventory") for _ in range(10)]
        assert 429 in [r.status_code for r in replies]
        throttled = next(r for r in replies if r.status_code == 429)
        assert int(throttled.headers["Retry-After"]) >= 1 and throttled.json()["status"] == 429
        for r in replies:
            assert {"x-toast-ratelimit-by", "x-toast-ratelimit-remaining", "x-toast-ratelimit-reset"} <= set(
                r.headers
            )
    finally:
        server.stop()
