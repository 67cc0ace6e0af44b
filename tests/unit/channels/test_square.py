"""Square client against scripted answers: body cursors, the change-feed cursor, guarded pushes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.lib.channels import LevelTarget, MovementCursor, Record, SquareClient
from orchestration.lib.channels.http import RetryPolicy
from tests.unit.channels.channel_fakes import CANARY, Script, reply

TARGET = LevelTarget("VAR1", "LOC1")
AS_OF = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)


def client(script, sleeps, **kw):
    return SquareClient("https://connect.example.com", CANARY, transport=script.transport, sleep=sleeps, **kw)


def count(q, at="2026-01-10T10:00:00.000Z", obj="VAR1", loc="LOC1"):
    return {"catalog_object_id": obj, "catalog_object_type": "ITEM_VARIATION", "state": "IN_STOCK",
            "location_id": loc, "quantity": q, "calculated_at": at}


def body(request: httpx.Request) -> dict:
    return json.loads(request.content)


def test_read_levels_pages_with_the_body_cursor(sleeps):
    def handler(request):
        if body(request).get("cursor") is None:
            return reply(200, {"counts": [count("3")], "cursor": "c1"})
        return reply(200, {"counts": [count("4", obj="VAR2")]})

    script = Script(handler)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    records = list(client(script, sleeps, location_ids=["LOC1"]).read_levels(since))
    assert [r.source_id for r in records] == ["VAR1|LOC1|IN_STOCK|2026-01-10T10:00:00.000Z",
                                              "VAR2|LOC1|IN_STOCK|2026-01-10T10:00:00.000Z"]
    first, second = body(script.requests[0]), body(script.requests[1])
    assert first["updated_after"] == "2026-01-01T00:00:00Z" and first["location_ids"] == ["LOC1"]
    assert second["cursor"] == "c1" and second["updated_after"] == first["updated_after"]
    assert script.requests[0].headers["authorization"] == f"Bearer {CANARY}"


def change(cid, created, kind="ADJUSTMENT"):
    return {"type": kind, kind.lower(): {"id": cid, "catalog_object_id": "VAR1", "location_id": "LOC1",
                                         "from_state": "IN_STOCK", "to_state": "SOLD", "quantity": "1",
                                         "occurred_at": created, "created_at": created}}


def test_read_movements_rereads_a_lookback_window_before_the_cursor(sleeps):
    script = Script(lambda r: reply(200, {"changes": [change("A", "2026-01-10T09:30:00Z"),
                                                      change("B", "2026-01-10T10:00:00Z")]}))
    cursor = MovementCursor(datetime(2026, 1, 10, 10, tzinfo=UTC), "B")
    records = list(client(script, sleeps, lookback=timedelta(hours=1)).read_movements(cursor))
    assert body(script.requests[0])["updated_after"] == "2026-01-10T08:59:59.999000Z"
    assert body(script.requests[0])["types"] == ["PHYSICAL_COUNT", "ADJUSTMENT"]
    assert [r.source_id for r in records] == ["A", "B"]  # A re-read on purpose; the loader dedups
    assert records[1].cursor_at == datetime(2026, 1, 10, 10, tzinfo=UTC)


def test_first_read_of_the_feed_has_no_lower_bound(sleeps):
    script = Script(lambda r: reply(200, {"changes": []}))
    list(client(script, sleeps).read_movements(None))
    assert "updated_after" not in body(script.requests[0])


def test_movement_cursor_orders_by_time_then_id_and_round_trips():
    at = datetime(2026, 1, 10, 10, tzinfo=UTC)
    cursor = MovementCursor(at, "B")
    assert cursor.advanced(Record("A", at, {})) == cursor  # same time, smaller id: not past the cursor
    assert cursor.advanced(Record("C", at, {})) == MovementCursor(at, "C")
    assert cursor.advanced(Record("A", at + timedelta(seconds=1), {})).id == "A"
    assert cursor.advanced(Record("Z", None, {})) == cursor
    assert MovementCursor.from_json(cursor.to_json()) == cursor
    assert MovementCursor.from_json(None) is None


# ---------------------------------------------------------------- set_level


def push_script(current, create_answer):
    def handler(request):
        if request.url.path.endswith("counts/batch-retrieve"):
            return reply(200, {"counts": [count(current)]})
        if isinstance(create_answer, Exception):
            raise create_answer
        return create_answer

    return Script(handler)


def test_set_level_writes_a_physical_count_with_the_key(sleeps):
    script = push_script("12", reply(200, {"counts": [count("14")], "changes": []}))
    result = client(script, sleeps).set_level(TARGET, Decimal(12), Decimal(14), "key-1", as_of=AS_OF)
    assert result.outcome == "applied" and result.observed_quantity == 14
    sent = body(script.requests[1])
    assert sent["idempotency_key"] == "key-1"
    assert sent["changes"][0] == {"type": "PHYSICAL_COUNT", "physical_count": {
        "reference_id": "key-1", "catalog_object_id": "VAR1", "state": "IN_STOCK", "location_id": "LOC1",
        "quantity": "14", "occurred_at": "2026-01-12T09:00:00Z"}}


def test_set_level_is_stale_when_the_count_moved_and_sends_nothing(sleeps):
    script = push_script("11", reply(200, {}))
    result = client(script, sleeps).set_level(TARGET, 12, 14, "key-1", as_of=AS_OF)
    assert result.outcome == "stale" and result.observed_quantity == 11
    assert len(script.requests) == 1


def test_set_level_already_at_target_replays_the_same_key(sleeps):
    script = push_script("14", reply(200, {"counts": [count("14")], "changes": []}))
    assert client(script, sleeps).set_level(TARGET, 12, 14, "key-1", as_of=AS_OF).outcome == "applied"
    assert len(script.requests) == 2


def test_reused_key_after_an_earlier_landing_is_applied(sleeps):
    reused = reply(400, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "IDEMPOTENCY_KEY_REUSED",
                                     "detail": "x"}]})
    assert client(push_script("14", reused), sleeps).set_level(TARGET, 12, 14, "k").outcome == "applied"
    assert client(push_script("12", reused), sleeps).set_level(TARGET, 12, 14, "k").outcome == "unknown"


def test_write_timeouts_are_retried_with_the_key_then_unknown(sleeps):
    script = push_script("12", httpx.ReadTimeout("slow"))
    result = client(script, sleeps, retry=RetryPolicy(max_attempts=3)).set_level(TARGET, 12, 14, "k", as_of=AS_OF)
    assert result.outcome == "unknown"
    writes = [r for r in script.requests if r.url.path.endswith("batch-create")]
    assert len(writes) == 3 and len({w.content for w in writes}) == 1


def test_failed_pre_read_is_failed_not_unknown(sleeps):
    script = Script(lambda r: reply(503))
    result = client(script, sleeps, retry=RetryPolicy(max_attempts=2)).set_level(TARGET, 12, 14, "k")
    assert result.outcome == "failed"
    assert all(r.url.path.endswith("counts/batch-retrieve") for r in script.requests)


def test_invalid_value_is_rejected(sleeps):
    bad = reply(400, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "INVALID_VALUE", "detail": "x"}]})
    assert client(push_script("12", bad), sleeps).set_level(TARGET, 12, 14, "k").outcome == "rejected"


# ---------------------------------------------------------------- P-ORDER: resume from any checkpoint


def feed_server(events, page_size):
    """A Square-like change feed: strict `created_at > updated_after`, ordered, paged by an offset cursor."""

    def handler(request):
        sent = body(request)
        after = sent.get("updated_after")
        selected = sorted((e for e in events if after is None or e[0] > datetime.fromisoformat(after)),
                          key=lambda e: (e[0], e[1]))
        start = int(sent.get("cursor") or 0)
        page = selected[start:start + page_size]
        answer = {"changes": [change(cid, at.isoformat().replace("+00:00", "Z")) for at, cid in page]}
        if start + page_size < len(selected):
            answer["cursor"] = str(start + page_size)
        return reply(200, answer)

    return handler


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.text("abcdef", min_size=1, max_size=4)), min_size=1, max_size=30,
                unique_by=lambda e: e[1]),
       st.integers(1, 7), st.data())
def test_resuming_from_any_checkpoint_misses_nothing(raw_events, page_size, data):
    """Records share timestamps; wherever the previous run stopped, the next run sees everything after."""
    base = datetime(2026, 1, 10, tzinfo=UTC)
    events = [(base + timedelta(seconds=s), cid) for s, cid in raw_events]
    ordered = sorted(events)
    k = data.draw(st.integers(1, len(ordered)))
    cursor = None
    for at, cid in ordered[:k]:
        cursor = MovementCursor(at, cid) if cursor is None else cursor.advanced(Record(cid, at, {}))
    script = Script(feed_server(events, page_size))
    resumed = {r.source_id for r in client(script, [], lookback=0).read_movements(cursor)}
    assert {cid for _, cid in ordered[k:]} <= resumed
