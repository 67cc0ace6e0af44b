"""Transport and data faults across every channel, switched at runtime through `POST /__faults`."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from simulator import FaultPlan, World, start_simulators
from simulator.scenario import AMAZON_MARKETPLACE

# One pooled client per module: a fresh httpx client per call costs ~30 ms of TLS setup.
HTTP = httpx.Client(timeout=10)

CHANNELS = ("shopify", "square", "amazon", "shiphero", "toast")


def read_request(channel, world):
    """A harmless authenticated read in each channel's own protocol: (method, path, httpx kwargs)."""
    if channel == "shopify":
        return (
            "POST",
            "/admin/api/2026-01/graphql.json",
            {
                "json": {"query": "{ locations(first: 5) { nodes { id name } } }"},
                "headers": {"X-Shopify-Access-Token": "sim-shopify-token"},
            },
        )
    if channel == "square":
        return (
            "POST",
            "/v2/inventory/counts/batch-retrieve",
            {"json": {"limit": 5}, "headers": {"Authorization": "Bearer sim-square-token"}},
        )
    if channel == "amazon":
        return (
            "GET",
            "/fba/inventory/v1/summaries",
            {
                "params": {
                    "granularityType": "Marketplace",
                    "granularityId": AMAZON_MARKETPLACE,
                    "marketplaceIds": AMAZON_MARKETPLACE,
                },
                "headers": {"x-amz-access-token": "sim-amazon-token"},
            },
        )
    if channel == "shiphero":
        return (
            "POST",
            "/graphql",
            {
                "json": {
                    "query": "{ warehouse_products { request_id data(first: 5) { edges { node { sku on_hand } } } } }"
                },
                "headers": {"Authorization": "Bearer sim-shiphero-token"},
            },
        )
    return (
        "GET",
        "/stock/v1/inventory",
        {
            "headers": {
                "Authorization": "Bearer sim-toast-token",
                "Toast-Restaurant-External-ID": world.catalog.toast_restaurant,
            }
        },
    )


def call(sims, world, channel, timeout=5.0):
    method, path, kwargs = read_request(channel, world)
    return HTTP.request(method, sims.base_urls[channel] + path, timeout=timeout, **kwargs)


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_in_each_channels_shape(sims, world, set_faults, channel, status):
    assert call(sims, world, channel).status_code == 200
    set_faults(channel, error_rate={status: 1.0})
    r = call(sims, world, channel)
    assert r.status_code == status
    body = r.json()
    shape = {
        "shopify": lambda b: isinstance(b["errors"], str),
        "square": lambda b: b["errors"][0]["category"] == "API_ERROR",
        "amazon": lambda b: set(b["errors"][0]) == {"code", "message", "details"},
        "shiphero": lambda b: b["errors"][0]["code"] == status,
        "toast": lambda b: b["status"] == status and "requestId" in b,
    }[channel]
    assert shape(body), body


@pytest.mark.parametrize("channel", CHANNELS)
def test_spurious_429_with_and_without_retry_after(sims, world, set_faults, channel):
    set_faults(channel, throttle_rate=1.0, retry_after=2)
    r = call(sims, world, channel)
    assert r.status_code == (200 if channel == "shopify" else 429)  # Shopify GraphQL throttles inside a 200
    assert r.headers["Retry-After"] == "2"
    if channel == "shopify":
        assert r.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    set_faults(channel, throttle_rate=1.0, retry_after=None)
    r = call(sims, world, channel)
    assert "Retry-After" not in r.headers


def test_hang_and_latency(sims, world, set_faults):
    set_faults("square", hang_rate=1.0, hang_seconds=0.6)
    with pytest.raises(httpx.ReadTimeout):
        call(sims, world, "square", timeout=0.1)
    set_faults("square", latency_ms=150)
    t0 = time.monotonic()
    assert call(sims, world, "square").status_code == 200
    assert time.monotonic() - t0 >= 0.15


def test_cut_json_on_a_list_page(sims, world, set_faults):
    set_faults("square", truncate_page="cut_json")
    r = call(sims, world, "square")
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_fault_sequence_is_deterministic():
    def statuses():
        world = World(skus=10, seed=3, days=2)
        with start_simulators(world) as sims:
            world.set_faults("toast", FaultPlan(seed=11, error_rate={500: 0.3, 503: 0.2}))
            return [call(sims, world, "toast").status_code for _ in range(15)]

    first = statuses()
    assert first == statuses()
    assert {200, 500, 503} <= set(first) | {200}
    assert len(set(first)) > 1


def test_apply_then_drop_with_an_idempotency_key(sims, world, set_faults, control):
    lst = world.catalog.listings_for("square")[0]
    body = {
        "idempotency_key": "drop-1",
        "changes": [
            {
                "type": "ADJUSTMENT",
                "adjustment": {
                    "catalog_object_id": lst.channel_sku,
                    "location_id": lst.channel_location,
                    "from_state": "NONE",
                    "to_state": "IN_STOCK",
                    "quantity": "5",
                    "occurred_at": "2026-01-12T00:00:00Z",
                },
            }
        ],
    }
    before = world.square_counts[(lst.channel_sku, lst.channel_location)]["IN_STOCK"]
    url = sims.base_urls["square"] + "/v2/inventory/changes/batch-create"
    headers = {"Authorization": "Bearer sim-square-token"}
    set_faults("square", apply_then_drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        HTTP.post(url, json=body, headers=headers)
    assert world.square_counts[(lst.channel_sku, lst.channel_location)]["IN_STOCK"] == before + 5, "applied"
    set_faults("square")
    r = HTTP.post(url, json=body, headers=headers)
    assert r.status_code == 200 and r.json()["counts"][0]["quantity"] == str(before + 5)
    assert control("square", "/__applied")["drop-1"] == {
        **control("square", "/__applied")["drop-1"],
        "requests": 2,
        "applied": 1,
    }


def test_apply_then_drop_without_idempotency_needs_a_read_back(sims, world, set_faults):
    guid = sorted(world.toast_items)[0]
    headers = {
        "Authorization": "Bearer sim-toast-token",
        "Toast-Restaurant-External-ID": world.catalog.toast_restaurant,
    }
    set_faults("toast", apply_then_drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        HTTP.put(
            sims.base_urls["toast"] + "/stock/v1/inventory/update",
            headers=headers,
            json=[{"guid": guid, "status": "QUANTITY", "quantity": 42.0}],
        )
    set_faults("toast")
    found = HTTP.post(
        sims.base_urls["toast"] + "/stock/v1/inventory/search", headers=headers, json={"guids": [guid]}
    ).json()
    assert found[0]["quantity"] == 42.0


def test_uom_fault_eaches_as_cases(sims, world, set_faults):
    packed = next(s for s in world.catalog.skus if s.packs and not s.is_kit)
    factor = packed.packs[packed.case_uom]
    query = {
        "query": '{ warehouse_products(sku: "'
        + packed.sku
        + '") { data(first: 5) { edges { node { on_hand } } } } }'
    }
    headers = {"Authorization": "Bearer sim-shiphero-token"}

    def read():
        body = HTTP.post(sims.base_urls["shiphero"] + "/graphql", json=query, headers=headers).json()
        return [e["node"]["on_hand"] for e in body["data"]["warehouse_products"]["data"]["edges"]]

    plain = read()
    set_faults("shiphero", uom_skus=[packed.sku], uom_mode="eaches_as_cases")
    assert read() == [q * factor for q in plain]


def test_hand_edit_rate_changes_levels_without_events(world):
    world.set_faults("shiphero", FaultPlan(hand_edit_rate=1.0))
    world.tick(30)
    masters = [x for x in world.catalog.listings_for("shiphero")]
    off = [x for x in masters if world.channel_level(x) != world.truth().get((x.sku, x.location), 0)]
    assert off, "hand edits make the master disagree with the physical truth"


def test_control_endpoints(sims, world):
    base = sims.base_urls["shiphero"]
    truth = HTTP.get(base + "/__truth").json()
    assert truth["channel"] == "shiphero" and len(truth["levels"]) == len(
        world.catalog.listings_for("shiphero")
    )
    assert all(r["channel_quantity"] == r["truth_on_hand"] for r in truth["levels"])
    ticked = HTTP.post(base + "/__tick", json={"n": 10}).json()
    assert ticked["movements"] and ticked["now"] == world.now.isoformat()
    assert HTTP.post(base + "/__faults", json={"truncate_page": "sideways"}).status_code == 400
    assert HTTP.post(base + "/__faults", json={"no_such_fault": 1}).status_code == 400
    assert HTTP.post(base + "/__faults", json={"error_rate": {"503": 0.5}}).json()["error_rate"] == {
        "503": 0.5
    }
    assert HTTP.get(base + "/__faults").json()["error_rate"] == {"503": 0.5}
    assert HTTP.get(base + "/__applied").json() == {}


def test_live_traffic_and_master_listing_lookup():
    world = World(skus=10, seed=4, days=1)
    start = world.now
    with start_simulators(world, live_events_per_second=200) as sims:
        time.sleep(0.3)
        truth = HTTP.get(sims.base_urls["square"] + "/__truth").json()
    assert world.now > start and truth["now"] > start.isoformat()
    row = truth["levels"][0]
    lst = world.master_listing("square", row["sku"], row["location"])
    assert (lst.channel_sku, lst.channel_location) == (row["channel_sku"], row["channel_location"])
