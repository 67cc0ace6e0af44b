"""Every channel client against the bundled simulator: reads match the channel's own state, change
feeds lose nothing under faults, pushes are guarded and settle, and tokens stay out of logs
(reliability.md F-500, F-429, F-PAGE, F-DUP, F-CAS, F-KILL-PUSH, S-3)."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from orchestration.lib.channels import (
    CLIENTS,
    AmazonClient,
    AuthError,
    LevelTarget,
    MovementCursor,
    RetryPolicy,
    ShipHeroClient,
    ShopifyClient,
    SquareClient,
    ToastClient,
)
from simulator.faults import FaultPlan
from simulator.scenario import AMAZON_MFN_CHANNEL, AMAZON_SELLER_ID, Scenario
from simulator.server import start_simulators
from simulator.world import World

CANARY = "canary-sim-tok-4b1d0e77"
FAST = RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_cap=0.05, budget_seconds=30)


@pytest.fixture(scope="module")
def sims():
    world = World(Scenario(seed=3, skus=12, days=2))
    options = {name: {"token": CANARY} for name in CLIENTS}
    options["amazon"].update(apply_delay=0.05)
    with start_simulators(world, options=options) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults(sims):
    for name in CLIENTS:
        sims.world.set_faults(name, FaultPlan())
    yield


def build(sims, channel: str, token: str = CANARY):
    cat, url = sims.world.catalog, sims.base_urls[channel]
    common = {"retry": FAST}
    if channel == "shopify":
        return ShopifyClient(url, token, **common)
    if channel == "square":
        return SquareClient(url, token, lookback=timedelta(minutes=10), **common)
    if channel == "amazon":
        mfn = [lst.channel_sku for lst in cat.listings_for("amazon") if lst.channel_location == AMAZON_MFN_CHANNEL]
        return AmazonClient(url, token, seller_id=AMAZON_SELLER_ID, mfn_skus=mfn, verify_attempts=3, verify_delay=0.1,
                            **common)
    if channel == "shiphero":
        return ShipHeroClient(url, token, page_size=7, **common)
    listed = [lst.channel_sku for lst in cat.listings_for("toast")]
    return ToastClient(url, token, restaurants={cat.toast_restaurant: listed}, **common)


def channel_levels(sims, channel):
    return {(row["channel_sku"], row["channel_location"]): row["channel_quantity"]
            for row in sims.app(channel).truth()["levels"]}


def test_levels_match_each_channel_state(sims):
    shopify = {(r.payload["inventoryItem"]["id"], r.payload["location"]["id"]):
               next(q["quantity"] for q in r.payload["quantities"] if q["name"] == "available")
               for r in build(sims, "shopify").read_levels()}
    assert shopify == channel_levels(sims, "shopify")

    square = {(r.payload["catalog_object_id"], r.payload["location_id"]): int(r.payload["quantity"])
              for r in build(sims, "square").read_levels()}
    assert square == channel_levels(sims, "square")

    shiphero = {(r.payload["sku"], r.payload["warehouse_id"]): r.payload["on_hand"]
                for r in build(sims, "shiphero").read_levels()}
    assert shiphero == channel_levels(sims, "shiphero")

    amazon = build(sims, "amazon")
    fba = {(r.payload["sellerSku"], "ATVPDKIKX0DER"): r.payload["inventoryDetails"]["fulfillableQuantity"]
           for r in amazon.read_levels()}
    mfn = {(r.payload["sku"], AMAZON_MFN_CHANNEL): r.payload["fulfillmentAvailability"][0]["quantity"]
           for r in amazon.read_listings()}
    assert {**fba, **mfn} == channel_levels(sims, "amazon")

    toast = {(r.payload["guid"], r.payload["restaurantGuid"]): r.payload for r in build(sims, "toast").read_levels()}
    expected = channel_levels(sims, "toast")
    assert set(toast) == set(expected)  # IN_STOCK items included through the search
    for key, qty in expected.items():
        assert int(toast[key]["quantity"] or 0) == qty


@pytest.mark.parametrize("channel", ["square", "shiphero"])
def test_change_feed_loses_nothing_under_transport_and_page_faults(sims, channel):
    clean = {r.source_id: r.payload for r in build(sims, channel).read_movements(None)}
    assert clean
    sims.world.set_faults(channel, FaultPlan(seed=5, error_rate={500: 0.15, 503: 0.1}, throttle_rate=0.1,
                                             retry_after=0.01, truncate_page="cut_json", truncate_rate=0.3,
                                             dup_rate=0.3))
    faulty = list(build(sims, channel).read_movements(None))
    assert {r.source_id for r in faulty} == set(clean)


@pytest.mark.parametrize("channel", [
    "square",
    "shiphero",
])
def test_short_pages_that_promise_more_are_followed(sims, channel):
    clean = {r.source_id for r in build(sims, channel).read_movements(None)}
    sims.world.set_faults(channel, FaultPlan(seed=6, truncate_page="short_with_next", truncate_rate=1.0))
    assert {r.source_id for r in build(sims, channel).read_movements(None)} == clean


@pytest.mark.parametrize("channel", ["square", "shiphero"])
def test_resuming_from_a_cursor_rereads_the_lookback_and_misses_nothing_new(sims, channel):
    client = build(sims, channel)
    first = list(client.read_movements(None))
    cursor = None
    for record in first:
        cursor = record_cursor(cursor, record)
    sims.world.tick(40)
    resumed = list(client.read_movements(cursor))
    everything = {r.source_id for r in client.read_movements(None)}
    new = everything - {r.source_id for r in first}
    assert new and new <= {r.source_id for r in resumed}
    window = cursor.at - client.lookback
    assert all(r.cursor_at >= window for r in resumed)


def record_cursor(cursor, record):
    return MovementCursor(record.cursor_at, record.source_id) if cursor is None else cursor.advanced(record)


def target_of(sims, channel):
    lst = next(lst for lst in sims.world.catalog.listings_for(channel)
               if channel != "amazon" or lst.channel_location == AMAZON_MFN_CHANNEL)
    return LevelTarget(lst.channel_sku, lst.channel_location)


@pytest.mark.parametrize("channel", list(CLIENTS))
def test_push_applies_then_a_stale_expectation_is_refused(sims, channel):
    client, target = build(sims, channel), target_of(sims, channel)
    before = client.read_level(target)
    start = before if before is not None else Decimal(0)
    result = client.set_level(target, before, start + 3, f"{channel}-apply-1")
    assert result.outcome == "applied", result
    assert client.read_level(target) == start + 3
    stale = client.set_level(target, start, start + 7, f"{channel}-apply-2")
    assert stale.outcome == "stale", stale
    assert client.read_level(target) == start + 3


def test_shopify_concurrent_sale_makes_the_push_stale(sims):
    client, target = build(sims, "shopify"), target_of(sims, "shopify")
    level = client.read_level(target)
    sims.world.set_faults("shopify", FaultPlan(cas_race_rate=1.0))
    assert client.set_level(target, level, level + 10, "shopify-cas-1").outcome == "stale"


@pytest.mark.parametrize("channel", ["shopify", "square"])
def test_dropped_reply_with_a_key_is_applied_exactly_once(sims, channel):
    """F-KILL-PUSH with idempotency: the retry carries the same key and the channel applies once."""
    client, target = build(sims, channel), target_of(sims, channel)
    level = client.read_level(target)
    sims.world.set_faults(channel, FaultPlan(seed=1, apply_then_drop_rate=0.6))
    key = f"{channel}-drop-1"
    result = client.set_level(target, level, level + 4, key)
    sims.world.set_faults(channel, FaultPlan())
    if result.outcome == "unknown":  # every attempt dropped: the pusher settles by reading back
        assert client.read_level(target) == level + 4
    else:
        assert result.outcome == "applied"
    applied = sims.world.applied[channel][key]
    assert applied.applied == 1


@pytest.mark.parametrize("channel", ["shiphero", "toast", "amazon"])
def test_dropped_reply_without_a_key_is_unknown_and_settled_by_read_back(sims, channel):
    client, target = build(sims, channel), target_of(sims, channel)
    level = client.read_level(target) or Decimal(0)
    sims.world.set_faults(channel, FaultPlan(apply_then_drop_rate=1.0))
    result = client.set_level(target, level, level + 2, f"{channel}-drop-2")
    sims.world.set_faults(channel, FaultPlan())
    assert result.outcome == "unknown"
    assert client.read_level(target) == level + 2  # it had landed
    again = build(sims, channel).set_level(target, level, level + 2, f"{channel}-drop-2")
    assert (again.outcome, again.detail) == ("applied", "already at the target quantity")  # not resent


@pytest.mark.parametrize("channel", list(CLIENTS))
def test_a_wrong_token_is_an_auth_error_and_the_token_is_not_logged(sims, channel, caplog):
    wrong = f"{CANARY}-wrong"
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        list(getattr(build(sims, channel, wrong), CLIENTS[channel].entities[0].reader)())
    assert wrong not in str(info.value) and wrong not in caplog.text


def test_canary_never_logged_under_faults(sims, caplog):
    for name in CLIENTS:
        # Toast and ShipHero round Retry-After up to whole seconds: keep their 429s out of a fast test.
        throttle = 0.0 if name in ("toast", "shiphero") else 0.2
        sims.world.set_faults(name, FaultPlan(seed=2, error_rate={500: 0.2}, throttle_rate=throttle,
                                              retry_after=0.01))
    with caplog.at_level(logging.DEBUG):
        for name, cls in CLIENTS.items():
            client = build(sims, name)
            for entity in cls.entities:
                reader = getattr(client, entity.reader)
                list(reader(None))
    assert "retrying" in caplog.text
    assert CANARY not in caplog.text


class CountingTransport(httpx.HTTPTransport):
    """Counts the requests a client sends, by path prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


def test_amazon_incremental_listing_read_returns_the_patched_offer_with_few_requests():
    from simulator.channels.amazon import AmazonApp
    from simulator.channels.base import ChannelServer

    world = World(Scenario(seed=5, skus=400, days=2))
    mfn = [lst.channel_sku for lst in world.catalog.listings_for("amazon") if lst.channel_location == AMAZON_MFN_CHANNEL]
    server = ChannelServer(AmazonApp(world, token=CANARY, rate_scale=40, apply_delay=0.05)).start()
    counter = CountingTransport()
    try:
        client = AmazonClient(server.base_url, CANARY, seller_id=AMAZON_SELLER_ID, mfn_skus=mfn, rate_scale=40,
                              verify_attempts=5, verify_delay=0.05, transport=counter, retry=FAST)
        full = list(client.read_listings())
        assert sorted(r.payload["sku"] for r in full) == sorted(mfn) and len(mfn) > 200
        assert len(counter.paths) == -(-len(mfn) // 20)  # 20 offers a request, not one each
        since = max(r.cursor_at for r in full)

        world.tick(30)  # the clock moves on past the cursor
        target = LevelTarget(mfn[7], AMAZON_MFN_CHANNEL)
        before = client.read_level(target)
        assert client.set_level(target, before, before + 5, "amazon-incremental-1").outcome == "applied"
        counter.paths.clear()
        changed = list(client.read_listings(since))
        assert len(counter.paths) <= 3 < len(mfn) // 50
        assert set(counter.paths) == {f"/listings/2021-08-01/items/{AMAZON_SELLER_ID}"}  # searches only
        patched = [r for r in changed if r.payload["sku"] == mfn[7]]
        assert [r.payload["fulfillmentAvailability"][0]["quantity"] for r in patched] == [before + 5]
        assert patched[0].cursor_at > since and patched[0].source_id not in {r.source_id for r in full}
        assert all(r.cursor_at >= since - client.lookback for r in changed)
        assert len(changed) < len(mfn) // 10
    finally:
        server.stop()


def test_shopify_incremental_level_read_finds_every_changed_level_at_a_fraction_of_the_cost():
    from simulator.channels.base import ChannelServer
    from simulator.channels.shopify import ShopifyApp

    world = World(Scenario(seed=5, skus=300, days=2))
    server = ChannelServer(ShopifyApp(world, token=CANARY, bucket_size=100000.0, restore_rate=100000.0)).start()
    counter = CountingTransport()
    try:
        client = ShopifyClient(server.base_url, CANARY, lookback=0, transport=counter, retry=FAST)
        full = {r.source_id: r for r in client.read_levels()}
        full_requests = len(counter.paths)
        since = max(r.cursor_at for r in full.values())

        world.tick(120, seconds=60)  # sales and receipts move some levels on
        target = LevelTarget(*next(iter(sorted(channel_key for channel_key in (
            (r.payload["inventoryItem"]["id"], r.payload["location"]["id"]) for r in full.values())))))
        before = client.read_level(target)
        assert client.set_level(target, before, before + 3, "shopify-incremental-1").outcome == "applied"

        counter.paths.clear()
        changed = {r.source_id: r for r in client.read_levels(since)}
        changed_requests = len(counter.paths)
        again = {r.source_id: r for r in client.read_levels()}
        moved = {sid: r for sid, r in again.items() if sid not in full}

        assert moved, "the traffic changed no level: the test proves nothing"
        assert set(moved) <= set(changed)  # every level that changed is read
        assert all(changed[sid].payload == r.payload for sid, r in moved.items())  # in the same shape
        assert {sid for sid in changed if sid not in moved} <= set(full)  # the rest: unchanged since `since`
        assert any(r.payload["inventoryItem"]["id"] == target.channel_sku
                   and r.payload["location"]["id"] == target.channel_location for r in changed.values())
        assert len(changed) < len(full) // 4
        assert changed_requests < full_requests // 2
    finally:
        server.stop()


def test_shopify_level_search_rejects_an_unknown_filter():
    from simulator.channels.base import ChannelServer
    from simulator.channels.shopify import ShopifyApp

    world = World(Scenario(seed=5, skus=20, days=2))
    server = ChannelServer(ShopifyApp(world, token=CANARY)).start()
    try:
        location = next(iter(world.catalog.shopify_locations.values()))
        answer = httpx.post(f"{server.base_url}/admin/api/2026-01/graphql.json",
                            headers={"X-Shopify-Access-Token": CANARY},
                            json={"query": f'query {{ location(id: "{location}") {{ inventoryLevels(first: 5, '
                                           'query: "colour:red") { nodes { id } } } }'}).json()
        assert "Invalid search field 'colour'" in answer["errors"][0]["message"]
    finally:
        server.stop()
