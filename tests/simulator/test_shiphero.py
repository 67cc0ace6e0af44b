"""ShipHero GraphQL simulator, driven by a plain httpx client (ShipHero publishes no official Python SDK)."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from simulator.channels.base import ChannelServer
from simulator.channels.shiphero import ShipHeroApp

# One pooled client per module: a fresh httpx client per call costs ~30 ms of TLS setup.
HTTP = httpx.Client(timeout=10)

PRODUCTS = """query($wh: String, $after: String, $first: Int) {
  warehouse_products(warehouse_id: $wh) { request_id complexity
    data(first: $first, after: $after) { pageInfo { hasNextPage endCursor }
      edges { cursor node { sku warehouse_id on_hand available allocated backorder updated_at } } } } }"""
CHANGES = """query($from: ISODateTime, $after: String, $sku: String) {
  inventory_changes(date_from: $from, sku: $sku) { request_id complexity
    data(first: 25, after: $after) { pageInfo { hasNextPage endCursor }
      edges { node { id sku warehouse_id previous_on_hand change_in_on_hand reason cycle_counted created_at } } } } }"""


@pytest.fixture
def client(sims):
    with httpx.Client(
        base_url=sims.base_urls["shiphero"], headers={"Authorization": "Bearer sim-shiphero-token"}
    ) as c:
        yield c


def run(client, query, **variables):
    r = client.post("/graphql", json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    return r.json()


def read_all(client, query, root, **variables):
    nodes, after = [], None
    while True:
        body = run(client, query, after=after, **variables)
        wrapper = body["data"][root]
        assert wrapper["request_id"] and wrapper["complexity"] >= 1
        nodes += [e["node"] for e in wrapper["data"]["edges"]]
        if not wrapper["data"]["pageInfo"]["hasNextPage"]:
            return nodes
        after = wrapper["data"]["pageInfo"]["endCursor"]


def test_warehouse_products_pagination_is_complete(client, world):
    nodes = read_all(client, PRODUCTS, "warehouse_products", first=7)
    expected = {
        (x.channel_sku, x.channel_location): world.truth().get((x.sku, x.location), 0)
        for x in world.catalog.listings_for("shiphero")
    }
    assert {(n["sku"], n["warehouse_id"]): n["on_hand"] for n in nodes} == expected
    assert len(nodes) == len(expected)


def test_inventory_changes_fold_to_on_hand_and_filter_by_date(client, world):
    world.tick(80)
    nodes = read_all(client, CHANGES, "inventory_changes")
    assert len({n["id"] for n in nodes}) == len(nodes) == len(world.shiphero_changes)
    on_hand = Counter()
    for n in nodes:
        on_hand[(n["sku"], n["warehouse_id"])] += n["change_in_on_hand"]
    assert dict(on_hand) == {k: p["on_hand"] for k, p in world.shiphero_products.items()}
    cut = world.now
    world.tick(80)
    newer = read_all(client, CHANGES, "inventory_changes", **{"from": cut.isoformat()})
    assert {n["id"] for n in newer} == {c["id"] for c in world.shiphero_changes if c["created_at"] >= cut}


def test_inventory_replace_sets_the_level_and_logs_a_change(client, world, control):
    lst = world.catalog.listings_for("shiphero")[0]
    mutation = """mutation($d: ReplaceInventoryInput!) { inventory_replace(data: $d) {
        request_id complexity warehouse_product { sku on_hand } } }"""
    data = {
        "sku": lst.channel_sku,
        "warehouse_id": lst.channel_location,
        "quantity": 17,
        "reason": "sync run 42",
    }
    body = run(client, mutation, d=data)
    assert body["data"]["inventory_replace"]["warehouse_product"] == {"sku": lst.channel_sku, "on_hand": 17}
    assert world.shiphero_products[(lst.channel_sku, lst.channel_location)]["on_hand"] == 17
    assert world.shiphero_changes[-1]["reason"] == "sync run 42"
    assert list(control("shiphero", "/__applied").values())[0]["applied"] == 1
    bad = run(client, mutation, d={**data, "sku": "NOPE"})
    assert bad["data"] == {"inventory_replace": None}
    err = bad["errors"][0]
    assert (
        set(err) == {"message", "operation", "field", "request_id", "code"}
        and err["operation"] == "inventory_replace"
    )


def test_unknown_field_and_bad_token(client, sims):
    body = run(client, "{ orders { data { edges { node { id } } } } }")
    assert body["data"] == {"orders": None} and "Cannot query field 'orders'" in body["errors"][0]["message"]
    r = HTTP.post(
        f"{sims.base_urls['shiphero']}/graphql",
        json={"query": PRODUCTS},
        headers={"Authorization": "Bearer x"},
    )
    assert r.status_code == 401 and r.json()["errors"][0]["message"]


def test_credit_bucket_answers_429_with_retry_after(world):
    server = ChannelServer(ShipHeroApp(world, credits=120, restore_rate=10)).start()
    try:
        headers = {"Authorization": "Bearer sim-shiphero-token"}
        replies = [
            HTTP.post(
                f"{server.base_url}/graphql",
                headers=headers,
                json={"query": PRODUCTS, "variables": {"first": 100}},
            )
            for _ in range(3)
        ]
        assert [r.status_code for r in replies][:2] == [200, 429]
        err = replies[1].json()["errors"][0]
        assert err["code"] == 30 and err["required_credits"] == 101 and err["remaining_credits"] < 101
        assert int(replies[1].headers["Retry-After"]) >= 1
    finally:
        server.stop()


def test_duplicates_and_missed_events_faults(client, world, set_faults):
    set_faults("shiphero", missed_rate=1.0)
    before = len(world.shiphero_changes)
    world.tick(60)
    hidden = {c["id"] for c in world.shiphero_changes[before:] if c["_hidden"]}
    assert hidden
    set_faults("shiphero", dup_rate=1.0)
    nodes = read_all(client, CHANGES, "inventory_changes")
    ids = [n["id"] for n in nodes]
    assert len(ids) > len(set(ids))
    assert not hidden & set(ids)
    assert set(ids) == {c["id"] for c in world.shiphero_changes if not c["_hidden"]}


def test_late_events_are_back_dated_behind_the_cursor(client, world, set_faults):
    set_faults("shiphero", late_rate=1.0, late_max_seconds=7200)
    cut = world.now
    before = len(world.shiphero_changes)
    world.tick(30)
    new = world.shiphero_changes[before:]
    assert new and all(c["created_at"] < world.now for c in new)
    seen = {n["id"] for n in read_all(client, CHANGES, "inventory_changes", **{"from": cut.isoformat()})}
    assert {c["id"] for c in new if c["created_at"] < cut} - seen, (
        "a cursor at `cut` misses back-dated events"
    )


def test_token_endpoint(sims):
    base = sims.base_urls["shiphero"]
    token = HTTP.post(base + "/auth/token", json={"username": "ops@example.com", "password": "pw"}).json()
    assert token["token_type"] == "Bearer"
    r = HTTP.post(
        base + "/graphql",
        json={"query": PRODUCTS},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert r.status_code == 200 and r.json()["data"]["warehouse_products"]["data"]["edges"]
    assert HTTP.post(base + "/auth/token", json={"username": "ops@example.com"}).status_code == 401
