"""Shopify client against scripted GraphQL answers: pagination, cost budget, push outcomes."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from orchestration.lib.channels import BadResponse, LevelTarget, ShopifyClient
from orchestration.lib.channels.http import RetryPolicy
from tests.unit.channels.channel_fakes import CANARY, Script, reply

ITEM = "gid://shopify/InventoryItem/1"
LOC = "gid://shopify/Location/7"
TARGET = LevelTarget(ITEM, LOC)


def cost(available=1900.0, requested=100):
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": 10,
                     "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": available,
                                        "restoreRate": 100.0}}}


def level(loc, available, updated="2026-01-10T10:00:00.000Z"):
    return {"id": f"gid://shopify/InventoryLevel/{loc}", "updatedAt": updated, "location": {"id": loc},
            "quantities": [{"name": "available", "quantity": available, "updatedAt": updated}]}


def page(items, has_next, end):
    return {"data": {"inventoryItems": {"pageInfo": {"hasNextPage": has_next, "endCursor": end}, "nodes": items}},
            "extensions": cost()}


def client(script, sleeps, **kw):
    return ShopifyClient("https://shop.example.com", CANARY, transport=script.transport, sleep=sleeps, **kw)


def op(request: httpx.Request) -> dict:
    return json.loads(request.content)


def test_read_levels_follows_item_pages_and_nested_level_pages(sleeps):
    def handler(request):
        body = op(request)
        if body["operationName"] == "MoreInventoryLevels":
            assert body["variables"]["after"] == "L1"
            return reply(200, {"data": {"inventoryItem": {"id": ITEM, "inventoryLevels": {
                "pageInfo": {"hasNextPage": False, "endCursor": "L2"}, "nodes": [level("loc/3", 3)]}}},
                "extensions": cost()})
        if body["variables"]["after"] is None:
            item = {"id": ITEM, "sku": "A", "tracked": True, "inventoryLevels": {
                "pageInfo": {"hasNextPage": True, "endCursor": "L1"}, "nodes": [level("loc/1", 1), level("loc/2", 2)]}}
            return reply(200, page([item], True, "P1"))
        item = {"id": "gid://shopify/InventoryItem/2", "sku": "B", "tracked": True, "inventoryLevels": {
            "pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": [level("loc/1", 9)]}}
        return reply(200, page([item], False, "P2"))

    script = Script(handler)
    records = list(client(script, sleeps).read_levels())
    assert [r.source_id for r in records] == [
        f"{ITEM}|loc/1|2026-01-10T10:00:00.000Z", f"{ITEM}|loc/2|2026-01-10T10:00:00.000Z",
        f"{ITEM}|loc/3|2026-01-10T10:00:00.000Z", "gid://shopify/InventoryItem/2|loc/1|2026-01-10T10:00:00.000Z"]
    assert records[0].payload["inventoryItem"] == {"id": ITEM, "sku": "A", "tracked": True}
    assert records[0].cursor_at.isoformat() == "2026-01-10T10:00:00+00:00"
    assert script.requests[0].headers["x-shopify-access-token"] == CANARY


def test_repeated_end_cursor_is_refused_instead_of_looping(sleeps):
    script = Script(lambda r: reply(200, page([], True, "SAME")))
    with pytest.raises(BadResponse, match="repeats"):
        list(client(script, sleeps).read_levels())


def test_throttled_answer_waits_for_the_bucket_then_retries(sleeps):
    throttled = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                 "extensions": cost(available=100.0, requested=600)}
    answers = [reply(200, throttled), reply(200, page([], False, None))]
    script = Script(lambda r: answers.pop(0))
    assert list(client(script, sleeps).read_levels()) == []
    assert len(script.requests) == 2
    assert sleeps[0] >= (600 - 100) / 100.0 - 0.01


def test_low_bucket_delays_the_next_request_before_sending(sleeps):
    answers = [reply(200, page([], True, "P1") | {"extensions": cost(available=50.0, requested=650)}),
               reply(200, page([], False, None))]
    script = Script(lambda r: answers.pop(0))
    list(client(script, sleeps).read_levels())
    assert sleeps and sleeps[0] >= 6.0 - 0.01  # (650 - 50) / 100 points per second


# ---------------------------------------------------------------- set_level


def set_answer(user_errors=(), after=14):
    group = None if user_errors else {"id": "g1", "createdAt": "2026-01-10T10:00:00Z",
                                      "changes": [{"name": "available", "delta": 2, "quantityAfterChange": after}]}
    return reply(200, {"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": group,
                                                           "userErrors": list(user_errors)}},
                       "extensions": cost()})


def test_set_level_sends_change_from_quantity_under_idempotent_key(sleeps):
    script = Script(lambda r: set_answer())
    result = client(script, sleeps).set_level(TARGET, Decimal(12), Decimal(14), "corr-42")
    assert result.outcome == "applied" and result.observed_quantity == 14
    body = op(script.requests[0])
    assert '@idempotent(key: "corr-42")' in body["query"]
    q = body["variables"]["input"]
    assert q["name"] == "available"
    assert q["quantities"] == [{"inventoryItemId": ITEM, "locationId": LOC, "quantity": 14, "changeFromQuantity": 12}]


@pytest.mark.parametrize("code,outcome", [("CHANGE_FROM_QUANTITY_STALE", "stale"),
                                          ("IDEMPOTENCY_CONCURRENT_REQUEST", "unknown"),
                                          ("IDEMPOTENCY_KEY_PARAMETER_MISMATCH", "rejected"),
                                          ("ITEM_NOT_STOCKED_AT_LOCATION", "rejected")])
def test_user_errors_map_to_outcomes(code, outcome, sleeps):
    script = Script(lambda r: set_answer([{"code": code, "field": ["input"], "message": "m"}]))
    assert client(script, sleeps).set_level(TARGET, 12, 14, "k").outcome == outcome


def test_replay_after_a_dropped_reply_resends_the_same_key(sleeps):
    answers = [httpx.RemoteProtocolError("dropped after apply"), set_answer()]

    def handler(request):
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    script = Script(handler)
    result = client(script, sleeps).set_level(TARGET, 12, 14, "k-replay")
    assert result.outcome == "applied"
    assert len(script.requests) == 2 and script.requests[0].content == script.requests[1].content


def test_push_with_no_answer_at_all_is_unknown(sleeps):
    def handler(request):
        raise httpx.ReadTimeout("no reply")

    result = client(Script(handler), sleeps, retry=RetryPolicy(max_attempts=2)).set_level(TARGET, 12, 14, "k")
    assert result.outcome == "unknown" and CANARY not in result.detail


def test_push_refused_by_auth_is_failed(sleeps):
    result = client(Script(lambda r: reply(401, {"errors": "Invalid API key"})), sleeps).set_level(TARGET, 1, 2, "k")
    assert result.outcome == "failed" and result.http_status == 401


def test_fractional_quantities_are_rejected_without_sending(sleeps):
    script = Script(lambda r: set_answer())
    assert client(script, sleeps).set_level(TARGET, 1, Decimal("2.5"), "k").outcome == "rejected"
    assert script.requests == []


def test_idempotency_key_cannot_break_out_of_the_document(sleeps):
    with pytest.raises(ValueError):
        client(Script(lambda r: set_answer()), sleeps).set_level(TARGET, 1, 2, 'x") { evil }')


def test_read_level_returns_available(sleeps):
    answer = {"data": {"inventoryItem": {"inventoryLevel": {"quantities": [{"name": "available", "quantity": 5}]}}},
              "extensions": cost()}
    assert client(Script(lambda r: reply(200, answer)), sleeps).read_level(TARGET) == 5
    missing = {"data": {"inventoryItem": {"inventoryLevel": None}}, "extensions": cost()}
    assert client(Script(lambda r: reply(200, missing)), sleeps).read_level(TARGET) is None


def test_no_expected_quantity_is_never_a_blind_write(sleeps):
    script = Script(lambda r: set_answer())
    assert client(script, sleeps).set_level(TARGET, None, 5, "k").outcome == "rejected"
    assert script.requests == []
