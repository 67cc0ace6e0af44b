"""Amazon, ShipHero and Toast clients against scripted answers: pagination, cursors, push outcomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from orchestration.lib.channels import (
    AmazonClient,
    AuthError,
    Backlog,
    BadResponse,
    LevelTarget,
    MovementCursor,
    ShipHeroClient,
    ToastClient,
)
from tests.unit.channels.channel_fakes import CANARY, Script, reply

# ---------------------------------------------------------------- Amazon


def amazon(script, sleeps, **kw):
    kw.setdefault("verify_attempts", 3)
    return AmazonClient("https://sp.example.com", CANARY, seller_id="SELLER", transport=script.transport,
                        sleep=sleeps, verify_delay=0.5, **kw)


def summary(sku, at="2026-01-10T00:00:00Z"):
    return {"sellerSku": sku, "lastUpdatedTime": at, "totalQuantity": 5,
            "inventoryDetails": {"fulfillableQuantity": 4}}


def test_amazon_summaries_follow_next_token_and_keep_start_date(sleeps):
    def handler(request):
        if "nextToken" not in request.url.params:
            return reply(200, {"payload": {"inventorySummaries": [summary("A")]}, "pagination": {"nextToken": "t1"}})
        return reply(200, {"payload": {"inventorySummaries": [summary("B")]}})

    script = Script(handler)
    records = list(amazon(script, sleeps).read_levels(datetime(2026, 1, 1, tzinfo=UTC)))
    assert [r.source_id for r in records] == ["A|ATVPDKIKX0DER|2026-01-10T00:00:00Z",
                                              "B|ATVPDKIKX0DER|2026-01-10T00:00:00Z"]
    second = script.requests[1].url.params
    assert second["nextToken"] == "t1" and second["startDateTime"] == "2026-01-01T00:00:00Z"
    assert script.requests[0].headers["x-amz-access-token"] == CANARY
    assert records[0].payload["marketplaceId"] == "ATVPDKIKX0DER"


def test_amazon_pacing_keeps_the_operation_rate(sleeps):
    pages = [reply(200, {"payload": {"inventorySummaries": []}, "pagination": {"nextToken": f"t{i}"}})
             for i in range(3)] + [reply(200, {"payload": {"inventorySummaries": []}})]
    list(amazon(Script(lambda r: pages.pop(0)), sleeps).read_levels())
    # The recording sleep does not move the clock, so the waits grow by 1/rate: 2 requests per second
    # (less the real time the test itself takes between requests, hence the tolerance).
    assert len(sleeps) == 3
    assert all(abs((b - a) - 0.5) < 0.05 for a, b in zip(sleeps, sleeps[1:], strict=False)), sleeps


def test_amazon_forbidden_is_an_auth_error(sleeps):
    script = Script(lambda r: reply(403, {"errors": [{"code": "Unauthorized", "message": "denied"}]}))
    with pytest.raises(AuthError):
        list(amazon(script, sleeps).read_levels())


def listing(q):
    return {"sku": "A", "summaries": [{"marketplaceId": "ATVPDKIKX0DER", "productType": "SHIRT",
                                       "lastUpdatedDate": "2026-01-10T00:00:00Z"}],
            "fulfillmentAvailability": [{"fulfillmentChannelCode": "DEFAULT", "quantity": q}]}


def amazon_push(levels, patch):
    """GETs answer successive levels; PATCH answers `patch`."""

    def handler(request):
        if request.method == "PATCH":
            if isinstance(patch, Exception):
                raise patch
            return patch
        return reply(200, listing(levels.pop(0) if len(levels) > 1 else levels[0]))

    return Script(handler)


ATARGET = LevelTarget("A", "DEFAULT")


def test_amazon_push_merges_then_verifies(sleeps):
    script = amazon_push([10, 10, 14], reply(200, {"sku": "A", "status": "ACCEPTED", "submissionId": "s"}))
    result = amazon(script, sleeps).set_level(ATARGET, 10, 14, "k")
    assert result.outcome == "applied" and result.observed_quantity == 14
    patch = next(json.loads(r.content) for r in script.requests if r.method == "PATCH")
    assert patch == {"productType": "SHIRT", "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability",
                                                          "value": [{"fulfillment_channel_code": "DEFAULT",
                                                                     "quantity": 14}]}]}


def test_amazon_accepted_is_left_in_flight_by_default(sleeps):
    script = amazon_push([10], reply(200, {"sku": "A", "status": "ACCEPTED", "submissionId": "s"}))
    result = amazon(script, sleeps, verify_attempts=0).set_level(ATARGET, 10, 14, "k")
    assert result.outcome == "accepted" and "read back" in result.detail
    assert [r.method for r in script.requests] == ["GET", "PATCH"]  # compared first, never read back here
    assert AmazonClient("https://sp.example.com", CANARY, seller_id="S").verify_attempts == 0


def test_amazon_accepted_but_not_visible_is_unknown(sleeps):
    script = amazon_push([10], reply(200, {"sku": "A", "status": "ACCEPTED", "submissionId": "s"}))
    assert amazon(script, sleeps).set_level(ATARGET, 10, 14, "k").outcome == "unknown"


def test_amazon_stale_and_invalid(sleeps):
    assert amazon(amazon_push([11], reply(200, {})), sleeps).set_level(ATARGET, 10, 14, "k").outcome == "stale"
    invalid = reply(200, {"sku": "A", "status": "INVALID", "submissionId": "s",
                          "issues": [{"code": "90220", "message": "bad", "severity": "ERROR"}]})
    assert amazon(amazon_push([10], invalid), sleeps).set_level(ATARGET, 10, 14, "k").outcome == "rejected"


def test_amazon_dropped_patch_is_unknown_and_never_resent(sleeps):
    script = amazon_push([10], httpx.RemoteProtocolError("dropped"))
    assert amazon(script, sleeps).set_level(ATARGET, 10, 14, "k").outcome == "unknown"
    assert sum(r.method == "PATCH" for r in script.requests) == 1


def offer(sku, at="2026-01-10T00:00:00Z", quantity=7, channel="DEFAULT"):
    return {"sku": sku, "summaries": [{"marketplaceId": "ATVPDKIKX0DER", "productType": "PRODUCT",
                                       "lastUpdatedDate": at}],
            "fulfillmentAvailability": [{"fulfillmentChannelCode": channel, "quantity": quantity}]}


def search_page(items, next_token=None, total=None):
    body = {"numberOfResults": len(items) if total is None else total, "items": items}
    if next_token:
        body["pagination"] = {"nextToken": next_token}
    return reply(200, body)


def test_amazon_mfn_listings_are_searched_not_read_one_by_one(sleeps):
    script = Script(lambda r: search_page([offer("A")]))
    records = list(amazon(script, sleeps, mfn_skus=["A"]).read_listings())
    assert records[0].source_id == "A|ATVPDKIKX0DER|2026-01-10T00:00:00Z"
    assert records[0].cursor_at == datetime(2026, 1, 10, tzinfo=UTC)
    assert records[0].payload == {**offer("A"), "marketplaceId": "ATVPDKIKX0DER"}
    (request,) = script.requests
    assert request.method == "GET" and request.url.path == "/listings/2021-08-01/items/SELLER"
    assert dict(request.url.params) == {
        "marketplaceIds": "ATVPDKIKX0DER", "includedData": "summaries,fulfillmentAvailability",
        "pageSize": "20", "sortBy": "lastUpdatedDate", "sortOrder": "ASC"}  # first run: no date filter


def test_amazon_listing_search_follows_page_tokens_with_the_same_query(sleeps):
    pages = {None: search_page([offer("A")], "t1", total=3), "t1": search_page([offer("B")], "t2", total=3),
             "t2": search_page([offer("C", "2026-01-11T00:00:00Z")], total=3)}
    script = Script(lambda r: pages[r.url.params.get("pageToken")])
    records = list(amazon(script, sleeps).read_listings())
    assert [r.payload["sku"] for r in records] == ["A", "B", "C"]
    assert [r.url.params.get("pageToken") for r in script.requests] == [None, "t1", "t2"]
    first = dict(script.requests[0].url.params)
    assert all({k: v for k, v in r.url.params.items() if k != "pageToken"} == first for r in script.requests)


def test_amazon_incremental_listing_read_asks_for_changes_since_the_cursor_less_the_lookback(sleeps):
    script = Script(lambda r: search_page([offer("A", "2026-01-10T09:30:00Z")]))
    client = amazon(script, sleeps, lookback=1800)  # seconds, as in the registry YAML
    assert amazon(script, sleeps).lookback == timedelta(hours=1)
    records = list(client.read_listings(datetime(2026, 1, 10, 10, tzinfo=UTC)))
    params = script.requests[0].url.params
    assert params["lastUpdatedAfter"] == "2026-01-10T09:30:00Z"  # "at or after": the cursor's own offer too
    assert (params["sortBy"], params["sortOrder"]) == ("lastUpdatedDate", "ASC")
    assert [r.source_id for r in records] == ["A|ATVPDKIKX0DER|2026-01-10T09:30:00Z"]


def test_amazon_listing_read_keeps_only_the_configured_mfn_skus(sleeps):
    items = [offer("A"), offer("A-FBA", channel="AMAZON_NA"), offer("B"), {"sku": "C", "summaries": []}]
    script = Script(lambda r: search_page(items))
    assert [r.payload["sku"] for r in amazon(script, sleeps, mfn_skus=["B", "C", "Z"]).read_listings()] == ["B", "C"]
    # Without a list: every listing that reports a fulfillment availability.
    assert [r.payload["sku"] for r in amazon(script, sleeps).read_listings()] == ["A", "A-FBA", "B"]


def test_amazon_listing_search_refuses_a_repeating_page_token(sleeps):
    script = Script(lambda r: search_page([offer("A")], "same", total=5))
    with pytest.raises(BadResponse, match="pageToken repeats"):
        list(amazon(script, sleeps).read_listings())
    assert len(script.requests) == 2


def test_amazon_listing_search_without_items_is_a_bad_response(sleeps):
    script = Script(lambda r: reply(200, {"sku": "A"}))  # e.g. a getListingsItem answer
    with pytest.raises(BadResponse, match="no items list"):
        list(amazon(script, sleeps).read_listings())


def minute(i):
    return f"2026-01-10T{i // 60:02d}:{i % 60:02d}:00Z"


def capped_search(stamps, limit=1000):
    """A search over offers updated at `stamps` (by index) that, like Amazon, pages through at most
    `limit` items and then stops without a nextToken; numberOfResults counts every match."""

    def handler(request):
        params = request.url.params
        if "identifiers" in params:
            skus = params["identifiers"].split(",")
            return search_page([offer(s, stamps[int(s[1:])]) for s in skus])
        after = params.get("lastUpdatedAfter")
        rows = sorted((at, f"S{i:04d}") for i, at in enumerate(stamps) if after is None or at >= after)
        start = int(params.get("pageToken") or 0)
        end = min(start + int(params["pageSize"]), len(rows), limit)
        return search_page([offer(sku, at) for at, sku in rows[start:end]], str(end) if end < min(len(rows), limit)
                           else None, total=len(rows))

    return Script(handler)


def test_amazon_listing_search_past_the_1000_item_limit_continues_from_the_newest_update(sleeps):
    stamps = [minute(i) for i in range(1300)]
    script = capped_search(stamps)
    records = list(amazon(script, sleeps).read_listings())
    assert sorted(r.payload["sku"] for r in records) == [f"S{i:04d}" for i in range(1300)]
    assert len(records) == 1300  # the overlap at the window edge loads once
    windows = [r.url.params.get("lastUpdatedAfter") for r in script.requests if "pageToken" not in r.url.params]
    assert windows == [None, minute(999)]
    assert len(script.requests) == 50 + 16  # 1000 in 20s, then 301 (the edge again) in 20s


def test_amazon_more_than_1000_offers_updated_at_once_are_read_by_sku(sleeps):
    stamps = [minute(0)] * 1100 + [minute(5)] * 10  # a bulk upload, then a few changes
    mfn = [f"S{i:04d}" for i in range(len(stamps))]
    script = capped_search(stamps)
    records = list(amazon(script, sleeps, mfn_skus=mfn).read_listings())
    assert sorted(r.payload["sku"] for r in records) == mfn
    by_sku = [r for r in script.requests if "identifiers" in r.url.params]
    assert len(by_sku) == 56 and all(r.url.params["identifiersType"] == "SKU" for r in by_sku)
    assert all(len(r.url.params["identifiers"].split(",")) <= 20 for r in by_sku)
    with pytest.raises(BadResponse, match="configure mfn_skus"):
        list(amazon(capped_search(stamps), sleeps).read_listings())


# ---------------------------------------------------------------- ShipHero


def shiphero(script, sleeps, **kw):
    return ShipHeroClient("https://sh.example.com", CANARY, transport=script.transport, sleep=sleeps, **kw)


def relay(root, nodes, has_next, end, complexity=101):
    return {"data": {root: {"request_id": "r", "complexity": complexity, "data": {
        "pageInfo": {"hasNextPage": has_next, "endCursor": end}, "edges": [{"node": n} for n in nodes]}}}}


def test_shiphero_levels_follow_relay_edges(sleeps):
    def handler(request):
        variables = json.loads(request.content)["variables"]
        if variables["after"] is None:
            return reply(200, relay("warehouse_products", [{"sku": "A", "warehouse_id": "W", "on_hand": 3,
                                                            "updated_at": "2026-01-10T00:00:00"}], True, "c0"))
        return reply(200, relay("warehouse_products", [{"sku": "B", "warehouse_id": "W", "on_hand": 1,
                                                        "updated_at": "2026-01-10T00:00:00Z"}], False, "c1"))

    records = list(shiphero(Script(handler), sleeps, snapshot_levels=False).read_levels())  # paged, not the snapshot
    assert [r.source_id for r in records] == ["A|W|2026-01-10T00:00:00", "B|W|2026-01-10T00:00:00Z"]
    assert records[0].cursor_at == datetime(2026, 1, 10, tzinfo=UTC)  # ShipHero's zone-less stamps are UTC


def test_shiphero_changes_start_a_lookback_before_the_cursor(sleeps):
    assert shiphero(Script(lambda r: reply(200)), sleeps).lookback == timedelta(hours=24)
    script = Script(lambda r: reply(200, relay("inventory_changes", [
        {"id": "X1", "created_at": "2026-01-10T10:00:00Z", "change_in_on_hand": -2}], False, None)))
    cursor = MovementCursor(datetime(2026, 1, 10, 10, tzinfo=UTC), "X1")
    records = list(shiphero(script, sleeps, lookback=3600).read_movements(cursor))  # seconds, as in the YAML
    assert json.loads(script.requests[0].content)["variables"]["date_from"] == "2026-01-10T08:59:59.999000Z"
    assert records[0].source_id == "X1"


def test_a_cursor_re_reads_from_its_read_start_less_the_lookback_never_past_its_position():
    at, hour, ms = datetime(2026, 1, 10, 10, tzinfo=UTC), timedelta(hours=1), timedelta(milliseconds=1)
    # Unknown read start: the whole lookback before the position.
    assert MovementCursor(at, "X").read_from(hour) == at - hour - ms
    # The last read started 30 minutes after the newest change: a change reported since then is dated at
    # most an hour before that start.
    assert MovementCursor(at, "X", at + hour / 2).read_from(hour) == at - hour / 2 - ms
    # A backlog (the newest change read is days before the read): nothing to re-read.
    assert MovementCursor(at, "X", at + 48 * hour).read_from(hour) == at - ms
    cursor = MovementCursor(at, "X", at + hour)
    assert MovementCursor.from_json(cursor.to_json()) == cursor and MovementCursor.from_json(cursor.to_json()).read_at == at + hour
    assert MovementCursor.from_json('{"at": "2026-01-10T10:00:00Z", "id": "X"}').read_at is None


def test_shiphero_credits_are_charged_and_waited_for(sleeps):
    answers = [reply(200, relay("inventory_changes", [], True, "c0", complexity=4000)),
               reply(200, relay("inventory_changes", [], False, None, complexity=4000))]
    list(shiphero(Script(lambda r: answers.pop(0)), sleeps, max_credit_wait=120).read_movements(None))
    assert sleeps and sleeps[0] > 60  # 4000 credits spent of 4004, restoring 60/s


def test_shiphero_change_read_leaves_a_backlog_rather_than_wait_past_max_credit_wait(sleeps):
    def page(n, has_next):
        return reply(200, relay("inventory_changes", [{"id": f"X{n}", "created_at": f"2026-01-10T10:00:0{n}Z"}],
                                has_next, f"c{n}", complexity=2000))

    answers = [page(0, True), page(1, True), page(2, True), page(3, False)]
    script = Script(lambda r: answers.pop(0))
    records = list(shiphero(script, sleeps, max_credit_wait=20).read_movements(None))
    # 4,004 credits pay two pages; the third needs 2,000 more (~33 s at 60/s), past the 20 s allowed.
    assert [r.source_id for r in records[:-1]] == ["X0", "X1"] and not sleeps
    assert isinstance(records[-1], Backlog) and "max_credit_wait" in records[-1].reason
    assert len(script.requests) == 2


def test_shiphero_change_read_throttled_by_shiphero_leaves_a_backlog_rather_than_wait(sleeps):
    """The client counts a full bucket, but the account spent credits elsewhere: ShipHero's 429 ends the
    read (with what it has) instead of a wait past max_credit_wait."""
    answers = [reply(200, relay("inventory_changes", [{"id": "X0", "created_at": "2026-01-10T10:00:00Z"}], True, "c0")),
               reply(429, headers={"Retry-After": "20"})]
    records = list(shiphero(Script(lambda r: answers.pop(0)), sleeps, max_credit_wait=5).read_movements(None))
    assert [r.source_id for r in records[:-1]] == ["X0"] and isinstance(records[-1], Backlog)
    assert not any(s >= 20 for s in sleeps)


def test_shiphero_change_feeds_of_several_warehouses_merge_in_time_order(sleeps):
    feeds = {"W1": ["2026-01-10T10:00:01Z", "2026-01-10T10:00:04Z"], "W2": ["2026-01-10T10:00:02Z", "2026-01-10T10:00:03Z"]}

    def handler(request):
        warehouse = json.loads(request.content)["variables"]["warehouse_id"]
        return reply(200, relay("inventory_changes", [{"id": f"{warehouse}-{at[-2]}", "created_at": at}
                                                      for at in feeds[warehouse]], False, None))

    records = list(shiphero(Script(handler), sleeps, warehouse_ids=["W1", "W2"]).read_movements(None))
    assert [r.source_id for r in records] == ["W1-1", "W2-2", "W2-3", "W1-4"]


STARGET = LevelTarget("A", "W")


def shiphero_push(on_hand, mutation):
    def handler(request):
        if "inventory_replace" in json.loads(request.content)["query"]:
            if isinstance(mutation, Exception):
                raise mutation
            return mutation
        return reply(200, relay("warehouse_products", [{"sku": "A", "warehouse_id": "W", "on_hand": on_hand}],
                                False, None))

    return Script(handler)


def test_shiphero_push_outcomes(sleeps):
    ok = reply(200, {"data": {"inventory_replace": {"request_id": "r", "complexity": 10,
                                                    "warehouse_product": {"sku": "A", "on_hand": 14}}}})
    script = shiphero_push(12, ok)
    assert shiphero(script, sleeps).set_level(STARGET, 12, 14, "k").outcome == "applied"
    sent = json.loads(script.requests[-1].content)["variables"]["data"]
    assert sent == {"sku": "A", "warehouse_id": "W", "quantity": 14, "reason": "inventory-sync correction k"}
    assert shiphero(shiphero_push(11, ok), sleeps).set_level(STARGET, 12, 14, "k").outcome == "stale"
    err = reply(200, {"errors": [{"message": "Product not found", "code": 5}], "data": {"inventory_replace": None}})
    assert shiphero(shiphero_push(12, err), sleeps).set_level(STARGET, 12, 14, "k").outcome == "rejected"


def test_shiphero_dropped_replace_is_unknown_and_sent_once(sleeps):
    script = shiphero_push(12, httpx.ReadTimeout("slow"))
    assert shiphero(script, sleeps).set_level(STARGET, 12, 14, "k").outcome == "unknown"
    assert sum("inventory_replace" in json.loads(r.content)["query"] for r in script.requests) == 1


# ---------------------------------------------------------------- Toast

R = "rest-1"


def toast(script, sleeps, listed=("g1", "g2", "g3")):
    return ToastClient("https://toast.example.com", CANARY, restaurants={R: list(listed)},
                       transport=script.transport, sleep=sleeps)


def item(guid, status, quantity=None):
    return {"guid": guid, "itemGuidValidity": "VALID", "status": status, "quantity": quantity,
            "multiLocationId": "m-" + guid, "versionId": None}


def test_toast_reads_in_stock_items_through_search(sleeps):
    def handler(request):
        assert request.headers["toast-restaurant-external-id"] == R
        if request.method == "GET":
            return reply(200, [item("g1", "QUANTITY", 7.5), item("g2", "OUT_OF_STOCK")],
                         headers={"Date": "Mon, 12 Jan 2026 10:00:00 GMT"})
        assert json.loads(request.content) == {"guids": ["g3"]}
        return reply(200, [item("g3", "IN_STOCK")], headers={"Date": "Mon, 12 Jan 2026 10:00:01 GMT"})

    records = list(toast(Script(handler), sleeps).read_levels())
    assert [r.payload["status"] for r in records] == ["QUANTITY", "OUT_OF_STOCK", "IN_STOCK"]
    assert records[0].payload["quantity"] == Decimal("7.5")
    assert records[0].source_id == "g1|rest-1|2026-01-12T10:00:00+00:00"
    assert records[2].payload["restaurantGuid"] == R


def toast_push(current, failure=None):
    """Search answers `current`; the update echoes what was sent, or raises `failure`."""

    def handler(request):
        if request.method == "POST":
            return reply(200, [current])
        if failure is not None:
            raise failure
        sent = json.loads(request.content)[0]
        return reply(200, [item("g1", sent["status"], sent.get("quantity"))])

    return Script(handler)


TTARGET = LevelTarget("g1", R)


@pytest.mark.parametrize("to,sent", [(Decimal(5), {"guid": "g1", "status": "QUANTITY", "quantity": 5.0}),
                                     (Decimal(0), {"guid": "g1", "status": "OUT_OF_STOCK"})])
def test_toast_push_sets_quantity_or_out_of_stock(to, sent, sleeps):
    script = toast_push(item("g1", "QUANTITY", 8.0))
    result = toast(script, sleeps).set_level(TTARGET, Decimal(8), to, "k")
    assert result.outcome == "applied" and result.observed_quantity == to
    assert json.loads(script.requests[-1].content) == [sent]


def test_toast_push_from_untracked_in_stock_and_stale(sleeps):
    assert toast(toast_push(item("g1", "IN_STOCK")), sleeps).set_level(TTARGET, None, 3, "k").outcome == "applied"
    assert toast(toast_push(item("g1", "QUANTITY", 2.0)), sleeps).set_level(TTARGET, 8, 3, "k").outcome == "stale"
    assert toast(toast_push(item("g1", "IN_STOCK")), sleeps).set_level(TTARGET, 8, 3, "k").outcome == "stale"
    assert toast(toast_push(item("g1", "QUANTITY", 2.0)), sleeps).set_level(TTARGET, 2, -1, "k").outcome == "rejected"


def test_toast_dropped_update_is_unknown_and_sent_once(sleeps):
    script = toast_push(item("g1", "QUANTITY", 8.0), httpx.RemoteProtocolError("dropped"))
    assert toast(script, sleeps).set_level(TTARGET, 8, 3, "k").outcome == "unknown"
    assert sum(r.method == "PUT" for r in script.requests) == 1


def test_toast_read_level():
    assert toast(toast_push(item("g1", "QUANTITY", 2.5)), []).read_level(TTARGET) == Decimal("2.5")
    assert toast(toast_push(item("g1", "OUT_OF_STOCK")), []).read_level(TTARGET) == 0
    assert toast(toast_push(item("g1", "IN_STOCK")), []).read_level(TTARGET) is None


def test_no_expected_quantity_never_overwrites_a_level(sleeps):
    ok = reply(200, {"data": {"inventory_replace": {"warehouse_product": {"on_hand": 5}}}})
    script = shiphero_push(12, ok)
    assert shiphero(script, sleeps).set_level(STARGET, None, 5, "k").outcome == "stale"
    assert not any("inventory_replace" in json.loads(r.content)["query"] for r in script.requests)
    amazon_script = amazon_push([10], reply(200, {}))
    assert amazon(amazon_script, sleeps).set_level(ATARGET, None, 5, "k").outcome == "stale"
    assert not any(r.method == "PATCH" for r in amazon_script.requests)
