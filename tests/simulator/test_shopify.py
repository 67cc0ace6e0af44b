"""Shopify Admin GraphQL simulator, driven through the official `ShopifyAPI` SDK where it can be.

The SDK builds `https://<shop>.myshopify.com/admin/api/<version>/graphql.json`; its own class-level
settings (`Session.setup(protocol=, myshopify_domain=, port=)`) point it at loopback: shop "127" +
domain "0.0.1" is host 127.0.0.1.
"""

from __future__ import annotations

import json
import urllib.error

import httpx
import pytest

# The official SDK is a test-only dependency (`pip install ShopifyAPI`).
pytest.importorskip("shopify", reason="needs the official SDK: pip install ShopifyAPI")
import shopify

from simulator.channels.base import ChannelServer
from simulator.channels.shopify import ShopifyApp

# One pooled client per module: a fresh httpx client per call costs ~30 ms of TLS setup.
HTTP = httpx.Client(timeout=10)

VERSION = "2026-01"
ITEMS = """query Items($first: Int!, $after: String, $query: String) {
  inventoryItems(first: $first, after: $after, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes { id sku tracked
      inventoryLevels(first: 10) { nodes { location { id name }
        quantities(names: ["available", "on_hand", "committed", "incoming"]) { name quantity updatedAt } } } } } }"""
SET = """mutation Set($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) @idempotent(key: "%s") {
    inventoryAdjustmentGroup { id createdAt reason referenceDocumentUri changes { name delta quantityAfterChange } }
    userErrors { code field message } } }"""


@pytest.fixture
def sdk(sims):
    port = int(sims.base_urls["shopify"].rsplit(":", 1)[1])
    shopify.Session.setup(protocol="http", myshopify_domain="0.0.1", port=port)
    shopify.ShopifyResource.activate_session(shopify.Session("127", VERSION, "sim-shopify-token"))
    yield lambda query, variables=None: json.loads(shopify.GraphQL().execute(query, variables))
    shopify.ShopifyResource.clear_session()
    shopify.Session.setup(protocol="https", myshopify_domain="myshopify.com", port=None)


def all_items(sdk, first=5, query=None):
    items, after, pages = [], None, 0
    while True:
        r = sdk(ITEMS, {"first": first, "after": after, "query": query})
        conn = r["data"]["inventoryItems"]
        items += conn["nodes"]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            return items, pages
        after = conn["pageInfo"]["endCursor"]


def levels(world):
    """{(item gid, location gid): available} as the world holds them."""
    return {
        (x.channel_sku, x.channel_location): world.shopify_levels[(x.channel_sku, x.channel_location)][
            "available"
        ]
        for x in world.catalog.listings_for("shopify")
    }


def first_level(world):
    lst = world.catalog.listings_for("shopify")[0]
    return lst, world.shopify_levels[(lst.channel_sku, lst.channel_location)]["available"]


def set_input(lst, quantity, change_from):
    return {
        "input": {
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": "gid://inventory-sync/Run/1",
            "quantities": [
                {
                    "inventoryItemId": lst.channel_sku,
                    "locationId": lst.channel_location,
                    "quantity": quantity,
                    "changeFromQuantity": change_from,
                }
            ],
        }
    }


def test_pagination_is_complete_and_levels_match_the_world(sdk, world):
    items, pages = all_items(sdk, first=4)
    expected = levels(world)
    assert pages == -(-len({k[0] for k in expected}) // 4)
    seen = {}
    for item in items:
        for lvl in item["inventoryLevels"]["nodes"]:
            q = {x["name"]: x["quantity"] for x in lvl["quantities"]}
            assert q["on_hand"] == q["available"] + q["committed"]
            seen[(item["id"], lvl["location"]["id"])] = q["available"]
    assert seen == expected
    sku = items[3]["sku"]
    assert [i["sku"] for i in all_items(sdk, query=f"sku:{sku}")[0]] == [sku]


def test_every_reply_carries_cost_extensions(sdk):
    r = sdk(ITEMS, {"first": 3})
    cost = r["extensions"]["cost"]
    assert cost["actualQueryCost"] <= cost["requestedQueryCost"]
    assert set(cost["throttleStatus"]) == {"maximumAvailable", "currentlyAvailable", "restoreRate"}


def test_bad_token_is_401_in_shopify_shape(sims):
    r = HTTP.post(
        f"{sims.base_urls['shopify']}/admin/api/{VERSION}/graphql.json",
        json={"query": "{ shop { name } }"},
        headers={"X-Shopify-Access-Token": "wrong"},
    )
    assert r.status_code == 401
    assert r.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }
    shopify.ShopifyResource.activate_session(shopify.Session("127", VERSION, "wrong"))
    port = int(sims.base_urls["shopify"].rsplit(":", 1)[1])
    shopify.Session.setup(protocol="http", myshopify_domain="0.0.1", port=port)
    shopify.ShopifyResource.activate_session(shopify.Session("127", VERSION, "wrong"))
    with pytest.raises(urllib.error.HTTPError) as exc:
        shopify.GraphQL().execute("{ shop { name } }")
    assert exc.value.code == 401
    shopify.Session.setup(protocol="https", myshopify_domain="myshopify.com", port=None)


def test_unknown_root_field_is_a_graphql_error(sdk):
    r = sdk("{ products(first: 1) { nodes { id } } }")
    assert (
        "data" not in r and r["errors"][0]["message"] == "Field 'products' doesn't exist on type 'QueryRoot'"
    )
    r = sdk('mutation { productDelete(input: {id: "x"}) { deletedProductId } }')
    assert r["errors"][0]["extensions"]["code"] == "undefinedField"


def test_leaky_bucket_throttles_with_the_throttled_shape(world):
    app = ShopifyApp(world, bucket_size=100, restore_rate=1)
    server = ChannelServer(app).start()
    try:
        url = f"{server.base_url}/admin/api/{VERSION}/graphql.json"
        headers = {"X-Shopify-Access-Token": "sim-shopify-token"}
        body = {"query": ITEMS, "variables": {"first": 2}}
        replies = [HTTP.post(url, json=body, headers=headers).json() for _ in range(4)]
        throttled = [r for r in replies if "errors" in r]
        assert throttled, "a 100-point bucket cannot pay for four of these queries"
        t = throttled[0]
        assert t["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in t
        assert t["extensions"]["cost"]["actualQueryCost"] is None
        status = t["extensions"]["cost"]["throttleStatus"]
        assert status["currentlyAvailable"] < t["extensions"]["cost"]["requestedQueryCost"]
        assert status["maximumAvailable"] == 100 and status["restoreRate"] == 1
    finally:
        server.stop()


def test_set_quantities_applies_and_replay_returns_the_original(sdk, world, control):
    lst, avail = first_level(world)
    first = sdk(SET % "key-1", set_input(lst, avail + 7, avail))["data"]["inventorySetQuantities"]
    assert first["userErrors"] == []
    changes = {c["name"]: c for c in first["inventoryAdjustmentGroup"]["changes"]}
    assert changes["available"]["delta"] == 7 and changes["available"]["quantityAfterChange"] == avail + 7
    again = sdk(SET % "key-1", set_input(lst, avail + 7, avail))["data"]["inventorySetQuantities"]
    assert again == first
    assert world.shopify_levels[(lst.channel_sku, lst.channel_location)]["available"] == avail + 7
    applied = control("shopify", "/__applied")["key-1"]
    assert (applied["requests"], applied["applied"]) == (2, 1)
    mismatch = sdk(SET % "key-1", set_input(lst, avail + 8, avail))["data"]["inventorySetQuantities"]
    assert mismatch["inventoryAdjustmentGroup"] is None
    assert mismatch["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"


def test_change_from_quantity_stale_is_rejected_and_nothing_changes(sdk, world):
    lst, avail = first_level(world)
    r = sdk(SET % "key-stale", set_input(lst, 1, avail + 3))["data"]["inventorySetQuantities"]
    assert r["inventoryAdjustmentGroup"] is None
    assert r["userErrors"] == [
        {
            "code": "CHANGE_FROM_QUANTITY_STALE",
            "field": ["input", "quantities", "0", "changeFromQuantity"],
            "message": "The changeFromQuantity value does not match persisted value.",
        }
    ]
    assert world.shopify_levels[(lst.channel_sku, lst.channel_location)]["available"] == avail
    # An explicit null skips the check.
    r = sdk(SET % "key-null", set_input(lst, 1, None))["data"]["inventorySetQuantities"]
    assert (
        r["userErrors"] == []
        and world.shopify_levels[(lst.channel_sku, lst.channel_location)]["available"] == 1
    )


def test_validation_user_errors(sdk, world):
    lst, avail = first_level(world)
    bad = set_input(lst, 3, avail)
    bad["input"]["reason"] = "because"
    bad["input"]["quantities"].append(
        {
            "inventoryItemId": "gid://shopify/InventoryItem/1",
            "locationId": lst.channel_location,
            "quantity": 1,
            "changeFromQuantity": 0,
        }
    )
    codes = [e["code"] for e in sdk(SET % "key-bad", bad)["data"]["inventorySetQuantities"]["userErrors"]]
    assert codes == ["INVALID_REASON", "INVALID_INVENTORY_ITEM"]


def test_cas_race_fault_makes_the_write_stale(sdk, world, set_faults):
    set_faults("shopify", cas_race_rate=1.0)
    lst = next(
        x
        for x in world.catalog.listings_for("shopify")
        if not world.catalog.sku(x.sku).is_kit
        and world.shopify_levels[(x.channel_sku, x.channel_location)]["available"] > 0
        and world.truth().get((x.sku, x.location), 0) > 0
    )
    avail = world.shopify_levels[(lst.channel_sku, lst.channel_location)]["available"]
    r = sdk(SET % "key-race", set_input(lst, avail + 1, avail))["data"]["inventorySetQuantities"]
    assert r["userErrors"][0]["code"] == "CHANGE_FROM_QUANTITY_STALE"
    assert world.shopify_levels[(lst.channel_sku, lst.channel_location)]["available"] < avail


def test_apply_then_drop_applies_once_and_a_keyed_retry_returns_the_result(sdk, world, set_faults, control):
    lst, avail = first_level(world)
    set_faults("shopify", apply_then_drop_rate=1.0)
    with pytest.raises(Exception) as exc:  # urllib: RemoteDisconnected / URLError
        sdk(SET % "key-drop", set_input(lst, avail + 2, avail))
    assert "Remote end closed" in str(exc.value) or "closed" in str(exc.value).lower()
    set_faults("shopify")
    r = sdk(SET % "key-drop", set_input(lst, avail + 2, avail))["data"]["inventorySetQuantities"]
    assert r["userErrors"] == [] and r["inventoryAdjustmentGroup"]["changes"][0]["delta"] == 2
    applied = control("shopify", "/__applied")["key-drop"]
    assert (applied["requests"], applied["applied"]) == (2, 1)


def test_uom_fault_reports_cases_for_chosen_skus(sdk, world, set_faults):
    packed = next(s for s in world.catalog.skus if s.packs and not s.is_kit)
    factor = packed.packs[packed.case_uom]
    before = {i["sku"]: i for i in all_items(sdk, first=20)[0]}[packed.sku]
    set_faults("shopify", uom_skus=[packed.sku], uom_mode="cases_as_eaches")
    after = {i["sku"]: i for i in all_items(sdk, first=20)[0]}[packed.sku]
    for b, a in zip(before["inventoryLevels"]["nodes"], after["inventoryLevels"]["nodes"], strict=True):
        qb = {x["name"]: x["quantity"] for x in b["quantities"]}
        qa = {x["name"]: x["quantity"] for x in a["quantities"]}
        assert qa["available"] == qb["available"] // factor


@pytest.mark.parametrize("mode", ["short_with_next", "early_has_next_false"])
def test_truncated_pages(sdk, world, set_faults, mode):
    total = len({x.channel_sku for x in world.catalog.listings_for("shopify")})
    set_faults("shopify", truncate_page=mode)
    items, _ = all_items(sdk, first=6)
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids))
    if mode == "short_with_next":
        assert len(ids) == total  # a correct client still gets everything
    else:
        assert len(ids) < total  # only reconciliation notices


def test_cut_json_page_is_not_parseable(sims, set_faults):
    set_faults("shopify", truncate_page="cut_json")
    r = HTTP.post(
        f"{sims.base_urls['shopify']}/admin/api/{VERSION}/graphql.json",
        json={"query": ITEMS, "variables": {"first": 3}},
        headers={"X-Shopify-Access-Token": "sim-shopify-token"},
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_older_versions_use_compare_quantity(sims, world):
    lst, avail = first_level(world)
    url = f"{sims.base_urls['shopify']}/admin/api/2025-10/graphql.json"
    headers = {"X-Shopify-Access-Token": "sim-shopify-token"}
    variables = {
        "input": {
            "name": "available",
            "reason": "correction",
            "quantities": [
                {"inventoryItemId": lst.channel_sku, "locationId": lst.channel_location, "quantity": 5}
            ],
        }
    }

    def send(**extra):
        variables["input"]["quantities"][0].update(extra)
        body = HTTP.post(
            url, json={"query": SET % f"k-{extra}", "variables": variables}, headers=headers
        ).json()
        return body["data"]["inventorySetQuantities"]

    assert send()["userErrors"][0]["code"] == "COMPARE_QUANTITY_REQUIRED"
    assert send(compareQuantity=avail + 1)["userErrors"][0]["code"] == "COMPARE_QUANTITY_STALE"
    assert send(compareQuantity=avail)["userErrors"] == []
    assert world.shopify_levels[(lst.channel_sku, lst.channel_location)]["available"] == 5
