"""ShipHero inventory snapshot in the simulator, driven by plain httpx: the job's progression and
cost, the file's two layouts and filters, and the pre-signed download (no token, 24 h, signature)."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest

from simulator.channels.shiphero import SNAPSHOT_GENERATE_COMPLEXITY

HTTP = httpx.Client(timeout=10)

FIELDS = "snapshot_id warehouse_id status error created_at enqueued_at updated_at snapshot_url snapshot_expiration"
GENERATE = f"""mutation($d: InventoryGenerateSnapshotInput!) {{ inventory_generate_snapshot(data: $d) {{
  request_id complexity snapshot {{ {FIELDS} }} }} }}"""
STATUS = f"""query($id: String!) {{ inventory_snapshot(snapshot_id: $id) {{ request_id complexity
  snapshot {{ {FIELDS} }} data {{ snapshot_id status }} }} }}"""
PRODUCTS = """query($wh: String, $after: String) { warehouse_products(warehouse_id: $wh) { complexity
  data(first: 100, after: $after) { pageInfo { hasNextPage endCursor }
    edges { node { sku warehouse_id on_hand available allocated backorder non_sellable_quantity } } } } }"""


@pytest.fixture
def shiphero(sims):
    app = sims.app("shiphero")
    app.snapshot_delay = 0.15
    with httpx.Client(base_url=sims.base_urls["shiphero"],
                      headers={"Authorization": "Bearer sim-shiphero-token"}) as c:
        yield app, c


def gql(client, query, **variables):
    r = client.post("/graphql", json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    return r.json()


def generate(client, **data):
    return gql(client, GENERATE, d=data)["data"]["inventory_generate_snapshot"]["snapshot"]


def wait(client, sid, seconds=3.0):
    deadline = time.monotonic() + seconds
    while True:
        snap = gql(client, STATUS, id=sid)["data"]["inventory_snapshot"]["snapshot"]
        if snap["status"] not in ("enqueued", "processing") or time.monotonic() > deadline:
            return snap
        time.sleep(0.05)


def paged(client, warehouse):
    nodes, after = [], None
    while True:
        conn = gql(client, PRODUCTS, wh=warehouse, after=after)["data"]["warehouse_products"]["data"]
        nodes += [e["node"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes
        after = conn["pageInfo"]["endCursor"]


def test_job_goes_enqueued_processing_success_and_costs_little(shiphero, world):
    app, client = shiphero
    warehouse = sorted(world.catalog.shiphero_warehouses.values())[0]
    before = app.credits_spent
    out = gql(client, GENERATE, d={"warehouse_id": warehouse, "new_format": True})["data"][
        "inventory_generate_snapshot"]
    assert out["complexity"] == SNAPSHOT_GENERATE_COMPLEXITY
    snap = out["snapshot"]
    assert snap["status"] == "InventorySnapshotStatus.enqueued" and snap["snapshot_url"] is None
    assert snap["created_at"] == snap["enqueued_at"] and snap["warehouse_id"] == warehouse
    seen = set()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        body = gql(client, STATUS, id=snap["snapshot_id"])["data"]["inventory_snapshot"]
        assert body["data"] == {"snapshot_id": snap["snapshot_id"], "status": body["snapshot"]["status"]}
        seen.add(body["snapshot"]["status"])
        if body["snapshot"]["status"] == "success":
            break
        time.sleep(0.02)
    assert {"processing", "success"} <= seen
    done = body["snapshot"]
    assert done["snapshot_url"].startswith(client.base_url.scheme + "://")
    assert done["snapshot_expiration"] > done["updated_at"]
    assert app.credits_spent - before < 2 * SNAPSHOT_GENERATE_COMPLEXITY + 200


def test_file_shows_what_warehouse_products_shows_in_both_layouts(shiphero, world, set_faults):
    app, client = shiphero
    packed = [s.sku for s in world.catalog.skus if s.packs]
    set_faults("shiphero", uom_skus=packed[:2])  # the unit-confusion view applies to the file too
    warehouse = sorted(world.catalog.shiphero_warehouses.values())[0]
    expected = {n["sku"]: n for n in paged(client, warehouse)}
    for new_format in (True, False):
        url = wait(client, generate(client, warehouse_id=warehouse, new_format=new_format)["snapshot_id"])[
            "snapshot_url"]
        document = HTTP.get(url).json()  # no Authorization header: the link is pre-signed
        assert set(document) >= {"snapshot_id", "warehouse_id", "snapshot_started_at", "products"}
        products = next(iter(document["products"].values())) if new_format else document["products"]
        assert set(products) == set(expected)
        for sku, node in expected.items():
            level = products[sku]["warehouse_products"][warehouse]
            assert (level["on_hand"], level["available"], level["allocated"], level["backorder"],
                    level["non_sellable"]) == (node["on_hand"], node["available"], node["allocated"],
                                               node["backorder"], node["non_sellable_quantity"])
            assert ("qty_in_totes" in level) == new_format


def test_filters_has_inventory_and_updated_from(shiphero, world):
    app, client = shiphero
    prods = world.shiphero_products
    lst = world.catalog.listings_for("shiphero")[0]
    prods[(lst.channel_sku, lst.channel_location)]["on_hand"] = 0
    url = wait(client, generate(client, has_inventory=True)["snapshot_id"])["snapshot_url"]
    listed = {(sku, wh) for sku, p in HTTP.get(url).json()["products"].items() for wh in p["warehouse_products"]}
    assert (lst.channel_sku, lst.channel_location) not in listed
    assert listed == {k for k, p in prods.items() if p["on_hand"] > 0}
    cut = world.now
    world.tick(20)
    url = wait(client, generate(client, updated_from=cut.isoformat())["snapshot_id"])["snapshot_url"]
    listed = {(sku, wh) for sku, p in HTTP.get(url).json()["products"].items() for wh in p["warehouse_products"]}
    assert listed == {k for k, p in prods.items() if p["updated_at"] >= cut}


def test_download_is_signed_and_expires_after_24_hours(shiphero, world):
    app, client = shiphero
    url = wait(client, generate(client)["snapshot_id"])["snapshot_url"]
    tampered = HTTP.get(url[:-4] + "0000")
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    missing = HTTP.get(url.replace("/snapshots/", "/snapshots/0"))
    assert missing.status_code == 404 and b"NoSuchKey" in missing.content
    world.tick(0, seconds=timedelta(hours=23, minutes=59).total_seconds())
    assert HTTP.get(url).status_code == 200
    world.tick(0, seconds=120)
    expired = HTTP.get(url)
    assert expired.status_code == 403 and b"Request has expired" in expired.content


def test_failed_stalled_and_aborted_jobs(shiphero):
    app, client = shiphero
    app.snapshot_outcome = "error"
    failed = wait(client, generate(client)["snapshot_id"])
    assert failed["status"] == "error" and failed["error"] and failed["snapshot_url"] is None
    app.snapshot_outcome = "stall"
    sid = generate(client)["snapshot_id"]
    assert wait(client, sid, seconds=0.4)["status"] == "processing"
    abort = """mutation($d: InventoryAbortSnapshotInput!) { inventory_abort_snapshot(data: $d) {
      complexity snapshot { snapshot_id status error } } }"""
    aborted = gql(client, abort, d={"snapshot_id": sid, "reason": "took too long"})
    assert aborted["data"]["inventory_abort_snapshot"]["snapshot"]["status"] == "aborted"
    listing = """query($s: String) { inventory_snapshots(status: $s) { complexity
      data(first: 10) { edges { node { snapshot_id status } } } } }"""
    statuses = lambda s: sorted(e["node"]["status"] for e in gql(client, listing, s=s)[  # noqa: E731
        "data"]["inventory_snapshots"]["data"]["edges"])
    assert statuses("error,aborted") == ["aborted", "error"]
    assert statuses("!error") == ["aborted"]
    unknown = gql(client, STATUS, id="nope")
    assert unknown["data"] == {"inventory_snapshot": None} and "not found" in unknown["errors"][0]["message"]
    bad = gql(client, GENERATE, d={"warehouse_id": "V2FyZWhvdXNlOjA="})
    assert bad["data"] == {"inventory_generate_snapshot": None} and bad["errors"][0]["code"] == 5
