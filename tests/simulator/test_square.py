"""Square Inventory v2 simulator, driven through the official `squareup` SDK (`Square(base_url=...)`)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import httpx
import pytest

# The official SDK is a test-only dependency (`pip install squareup`).
pytest.importorskip("square", reason="needs the official SDK: pip install squareup")
from square import Square
from square.core.api_error import ApiError

from simulator import FaultPlan
from simulator.channels.base import ChannelServer
from simulator.channels.square import SquareApp

# One pooled client per module: a fresh httpx client per call costs ~30 ms of TLS setup.
HTTP = httpx.Client(timeout=10)

NO_RETRY = {"max_retries": 0}


@pytest.fixture
def sq(sims):
    return Square(token="sim-square-token", base_url=sims.base_urls["square"])


def world_counts(world):
    out = {}
    for lst in world.catalog.listings_for("square"):
        cnt = world.square_counts[(lst.channel_sku, lst.channel_location)]
        out[(lst.channel_sku, lst.channel_location, "IN_STOCK")] = Decimal(cnt["IN_STOCK"])
        if cnt["WASTE"]:
            out[(lst.channel_sku, lst.channel_location, "WASTE")] = Decimal(cnt["WASTE"])
    return out


def fold(changes):
    """IN_STOCK per (object, location) from the change feed, in feed order (ascending occurred_at)."""
    level: dict[tuple[str, str], Decimal] = Counter()
    for c in changes:
        if c.type == "PHYSICAL_COUNT":
            pc = c.physical_count
            level[(pc.catalog_object_id, pc.location_id)] = Decimal(pc.quantity)
        else:
            a = c.adjustment
            sign = 1 if a.to_state == "IN_STOCK" else -1 if a.from_state == "IN_STOCK" else 0
            level[(a.catalog_object_id, a.location_id)] += sign * Decimal(a.quantity)
    return dict(level)


def change_id(c):
    return (c.physical_count or c.adjustment).id


def occurred(c):
    return (c.physical_count or c.adjustment).occurred_at


def test_counts_pagination_is_complete(sq, world):
    pager = sq.inventory.batch_get_counts(limit=7)
    counts = list(pager)
    assert {
        (c.catalog_object_id, c.location_id, c.state): Decimal(c.quantity) for c in counts
    } == world_counts(world)
    assert len(counts) > 7, "more than one page was served"
    stamps = [c.calculated_at for c in counts]
    assert stamps == sorted(stamps, reverse=True)


def test_change_feed_is_complete_ordered_and_folds_to_the_counts(sq, world):
    world.tick(60)
    changes = list(sq.inventory.batch_get_changes(limit=50))
    assert len({change_id(c) for c in changes}) == len(changes) == len(world.square_changes)
    assert [occurred(c) for c in changes] == sorted(occurred(c) for c in changes)
    in_stock = {(k[0], k[1]): v for k, v in world_counts(world).items() if k[2] == "IN_STOCK"}
    assert fold(changes) == {k: v for k, v in in_stock.items() if k in fold(changes)}
    assert set(fold(changes)) == set(in_stock)


def test_updated_after_filters_on_creation_time(sq, world):
    cut = world.now
    world.tick(40)
    newer = list(sq.inventory.batch_get_changes(updated_after=cut.isoformat()))
    expected = {c[c["type"].lower()]["id"] for c in world.square_changes if c["_created"] > cut}
    assert {change_id(c) for c in newer} == expected and expected


def test_bad_token_is_401_in_square_shape(sims):
    bad = Square(token="nope", base_url=sims.base_urls["square"])
    with pytest.raises(ApiError) as exc:
        list(bad.inventory.batch_get_counts())
    assert exc.value.status_code == 401
    assert exc.value.body["errors"][0] == {
        "category": "AUTHENTICATION_ERROR",
        "code": "UNAUTHORIZED",
        "detail": "This request could not be authorized.",
    }


def count_change(lst, quantity):
    return {
        "type": "PHYSICAL_COUNT",
        "physical_count": {
            "reference_id": "sync-1",
            "catalog_object_id": lst.channel_sku,
            "location_id": lst.channel_location,
            "state": "IN_STOCK",
            "quantity": str(quantity),
            "occurred_at": "2026-01-12T00:05:00Z",
        },
    }


def test_batch_create_is_idempotent(sq, world, control):
    lst = world.catalog.listings_for("square")[0]
    current = world.square_counts[(lst.channel_sku, lst.channel_location)]["IN_STOCK"]
    first = sq.inventory.batch_create_changes(
        idempotency_key="idem-1", changes=[count_change(lst, current + 4)]
    )
    assert first.counts[0].quantity == str(current + 4)
    replay = sq.inventory.batch_create_changes(
        idempotency_key="idem-1", changes=[count_change(lst, current + 4)]
    )
    assert replay == first
    assert world.square_counts[(lst.channel_sku, lst.channel_location)]["IN_STOCK"] == current + 4
    assert control("square", "/__applied")["idem-1"]["applied"] == 1
    with pytest.raises(ApiError) as exc:
        sq.inventory.batch_create_changes(idempotency_key="idem-1", changes=[count_change(lst, 1)])
    assert exc.value.status_code == 400 and exc.value.body["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    created = [
        c
        for c in sq.inventory.batch_get_changes(catalog_object_ids=[lst.channel_sku])
        if c.physical_count and c.physical_count.reference_id == "sync-1"
    ]
    assert len(created) == 1, "the write appears once in the feed"


def test_batch_create_limits_and_validation(sims, world):
    url = f"{sims.base_urls['square']}/v2/inventory/changes/batch-create"
    headers = {"Authorization": "Bearer sim-square-token", "Square-Version": "2025-01-23"}
    lst = world.catalog.listings_for("square")[0]
    r = HTTP.post(url, json={"changes": [count_change(lst, 1)]}, headers=headers)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MISSING_REQUIRED_PARAMETER"
    assert r.headers["Square-Version"] == "2025-01-23"
    r = HTTP.post(
        url, json={"idempotency_key": "k", "changes": [count_change(lst, 1)] * 101}, headers=headers
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "ARRAY_LENGTH_TOO_LONG"
    bad = count_change(lst, 1)
    bad["physical_count"]["catalog_object_id"] = "UNKNOWN"
    r = HTTP.post(url, json={"idempotency_key": "k2", "changes": [bad]}, headers=headers)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "NOT_FOUND"


def test_rate_limit_is_a_plain_429(world):
    server = ChannelServer(SquareApp(world, rate=0.001, burst=2)).start()
    try:
        url = f"{server.base_url}/v2/inventory/counts/batch-retrieve"
        replies = [
            HTTP.post(url, json={}, headers={"Authorization": "Bearer sim-square-token"}) for _ in range(3)
        ]
        assert [r.status_code for r in replies] == [200, 200, 429]
        assert replies[2].json() == {
            "errors": [
                {
                    "category": "RATE_LIMIT_ERROR",
                    "code": "RATE_LIMITED",
                    "detail": "This request was rate limited.",
                }
            ]
        }
        assert "Retry-After" not in replies[2].headers
    finally:
        server.stop()


def test_duplicate_events_fault(sq, world, set_faults):
    set_faults("square", dup_rate=1.0, seed=3)
    changes = list(sq.inventory.batch_get_changes(limit=10))
    ids = [change_id(c) for c in changes]
    assert len(ids) > len(set(ids)), "duplicates were served"
    assert set(ids) == {c[c["type"].lower()]["id"] for c in world.square_changes}, "nothing lost"


def test_late_back_dated_events_fault(sq, world, set_faults):
    set_faults("square", late_rate=1.0)
    cut = world.now
    world.tick(80)
    late = [
        c
        for c in sq.inventory.batch_get_changes(updated_after=cut.isoformat())
        if occurred(c) < (c.physical_count or c.adjustment).created_at
    ]
    assert late, "new events carry an occurred_at earlier than their creation"
    assert any(occurred(c) < cut.isoformat().replace("+00:00", "Z") for c in late), "some before the cursor"


def test_missed_events_fault_and_hand_edits_break_the_fold(sq, world, set_faults, sims):
    set_faults("square", missed_rate=1.0)
    world.tick(80)
    changes = list(sq.inventory.batch_get_changes())
    in_stock = {(k[0], k[1]): v for k, v in world_counts(world).items() if k[2] == "IN_STOCK"}
    assert fold(changes) != in_stock
    hidden = [c for c in world.square_changes if c["_hidden"]]
    assert hidden and not {change_id(c) for c in changes} & {c[c["type"].lower()]["id"] for c in hidden}

    lst = world.catalog.listings_for("square")[1]
    before = len(world.square_changes)
    HTTP.post(
        f"{sims.base_urls['square']}/__hand_edit",
        json={"channel_sku": lst.channel_sku, "channel_location": lst.channel_location, "quantity": 999},
    )
    assert world.square_counts[(lst.channel_sku, lst.channel_location)]["IN_STOCK"] == 999
    assert len(world.square_changes) == before


def test_a_careful_reader_survives_the_demo_fault_plan(sims, world):
    """Retries (5xx, 429, cut JSON), keeps paginating short pages and dedupes by id: nothing lost."""
    world.set_faults("square", FaultPlan.demo("square", []))
    world.set_faults(
        "square", FaultPlan(**{**FaultPlan.demo("square", []).to_dict(), "truncate_page": "cut_json"})
    )
    url = sims.base_urls["square"] + "/v2/inventory/changes/batch-retrieve"
    seen, cursor, attempts = {}, None, 0
    while True:
        attempts += 1
        assert attempts < 500
        r = HTTP.post(
            url,
            json={"limit": 20, **({"cursor": cursor} if cursor else {})},
            headers={"Authorization": "Bearer sim-square-token"},
        )
        if r.status_code != 200:
            continue
        try:
            page = r.json()
        except ValueError:
            continue
        for c in page["changes"]:
            seen[c[c["type"].lower()]["id"]] = c
        cursor = page.get("cursor")
        if not cursor:
            break
    assert set(seen) == {c[c["type"].lower()]["id"] for c in world.square_changes if not c["_hidden"]}
    assert attempts > len(seen) // 20, "faults were hit"


def test_change_cursor_keeps_full_timestamp_precision(sq, world, set_faults):
    """Writes may carry microseconds; a short page must not be served again from a rounded cursor."""
    lst = world.catalog.listings_for("square")[0]
    for i, micros in enumerate((123456, 123457, 123999)):
        change = count_change(lst, 50 + i)
        change["physical_count"]["occurred_at"] = f"2030-01-01T00:00:00.{micros}Z"
        sq.inventory.batch_create_changes(idempotency_key=f"us-{i}", changes=[change])
    clean = [change_id(c) for c in sq.inventory.batch_get_changes(catalog_object_ids=[lst.channel_sku])]
    set_faults("square", truncate_page="short_with_next")
    pager = sq.inventory.batch_get_changes(catalog_object_ids=[lst.channel_sku], limit=2)
    assert [change_id(c) for c in pager] == clean
