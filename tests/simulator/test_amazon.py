"""Amazon SP-API simulator, driven through `python-amazon-sp-api` (`sp_api.api.Inventories`, `ListingsItems`).

The SDK takes its host from the marketplace; the client's `endpoint` attribute is set to the simulator
after construction.  The LWA token exchange goes to the simulator too, through the SDK's own
`auth_token_client_class` hook (an `AccessTokenClient` with another `scheme`/`host`).
"""

from __future__ import annotations

import time

import httpx
import pytest

# The official SDK is a test-only dependency (`pip install python-amazon-sp-api`).
pytest.importorskip("sp_api", reason="needs the official SDK: pip install python-amazon-sp-api")
from sp_api.api import Inventories, ListingsItems
from sp_api.auth import AccessTokenClient
from sp_api.auth.access_token_client import cache as lwa_cache
from sp_api.base import Marketplaces, SellingApiBadRequestException, SellingApiForbiddenException
from sp_api.base.exceptions import SellingApiRequestThrottledException

from simulator import World
from simulator.channels.amazon import AmazonApp
from simulator.channels.base import ChannelServer
from simulator.scenario import AMAZON_MARKETPLACE, AMAZON_MFN_CHANNEL, AMAZON_SELLER_ID

# One pooled client per module: a fresh httpx client per call costs ~30 ms of TLS setup.
HTTP = httpx.Client(timeout=10)

CREDS = {
    "refresh_token": "sim-amazon-refresh-token",
    "lwa_app_id": "amzn1.application-oa2-client.sim",
    "lwa_client_secret": "sim-secret",
}


def sdk_client(cls, base_url, credentials=CREDS):
    host = base_url.split("//", 1)[1]
    lwa = type("SimLWA", (AccessTokenClient,), {"scheme": "http://", "host": host})
    lwa_cache.clear()  # the SDK caches access tokens per refresh token across clients
    client = cls(credentials=credentials, marketplace=Marketplaces.US, auth_token_client_class=lwa)
    client.endpoint = base_url
    return client


@pytest.fixture
def big_world():
    return World(skus=120, seed=9, days=2)


@pytest.fixture
def amazon(big_world):
    server = ChannelServer(AmazonApp(big_world, rate_scale=100, apply_delay=0.2, next_token_ttl=30)).start()
    yield server
    server.stop()


def read_all(inv, **kwargs):
    summaries, res = (
        [],
        inv.get_inventory_summary_marketplace(details=True, marketplaceIds=[AMAZON_MARKETPLACE], **kwargs),
    )
    pages = 1
    summaries += res.payload["inventorySummaries"]
    while res.next_token:
        res = inv.get_inventory_summary_marketplace(
            details=True, marketplaceIds=[AMAZON_MARKETPLACE], nextToken=res.next_token, **kwargs
        )
        summaries += res.payload["inventorySummaries"]
        pages += 1
    return summaries, pages


def test_fba_summaries_pagination_is_complete(amazon, big_world):
    inv = sdk_client(Inventories, amazon.base_url)
    summaries, pages = read_all(inv)
    fba = {
        x.channel_sku: x
        for x in big_world.catalog.listings_for("amazon")
        if x.channel_location == AMAZON_MARKETPLACE
    }
    assert pages == -(-len(fba) // 50) and pages > 1
    got = {s["sellerSku"]: s["inventoryDetails"]["fulfillableQuantity"] for s in summaries}
    assert got == {sku: big_world.truth().get((x.sku, "FBA-US"), 0) for sku, x in fba.items()}
    for s in summaries:
        d = s["inventoryDetails"]
        assert (
            s["totalQuantity"]
            == d["fulfillableQuantity"]
            + d["inboundShippedQuantity"]
            + d["unfulfillableQuantity"]["totalUnfulfillableQuantity"]
        )


def test_start_date_time_filters_changed_summaries(amazon, big_world):
    inv = sdk_client(Inventories, amazon.base_url)
    cut = big_world.now
    big_world.tick(200)
    changed = {sku for sku, rec in big_world.amazon_fba.items() if rec["updated"] >= cut}
    assert changed
    summaries, _ = read_all(inv, startDateTime=cut.isoformat())
    assert {s["sellerSku"] for s in summaries} == changed


def test_next_token_expires(big_world):
    server = ChannelServer(AmazonApp(big_world, rate_scale=100, next_token_ttl=0.05)).start()
    try:
        inv = sdk_client(Inventories, server.base_url)
        res = inv.get_inventory_summary_marketplace(marketplaceIds=[AMAZON_MARKETPLACE])
        time.sleep(0.1)
        with pytest.raises(SellingApiBadRequestException) as exc:
            inv.get_inventory_summary_marketplace(
                marketplaceIds=[AMAZON_MARKETPLACE], nextToken=res.next_token
            )
        assert exc.value.code == 400 and "expired" in exc.value.error[0]["message"]
    finally:
        server.stop()


def test_published_rate_limit_answers_quota_exceeded(big_world):
    server = ChannelServer(AmazonApp(big_world)).start()  # the documented 2 req/s, burst 2
    try:
        url = f"{server.base_url}/fba/inventory/v1/summaries"
        params = {
            "granularityType": "Marketplace",
            "granularityId": AMAZON_MARKETPLACE,
            "marketplaceIds": AMAZON_MARKETPLACE,
        }
        # Timing-proof: with burst 2 and 2 tokens/s, a quick burst of calls must hit the limit soon.
        replies = []
        while len(replies) < 20 and (not replies or replies[-1].status_code == 200):
            replies.append(HTTP.get(url, params=params, headers={"x-amz-access-token": "sim-amazon-token"}))
        assert len(replies) >= 3 and [r.status_code for r in replies[:2]] == [200, 200]
        throttled = replies[-1]
        assert throttled.status_code == 429
        assert throttled.json() == {
            "errors": [
                {
                    "code": "QuotaExceeded",
                    "details": "",
                    "message": "You exceeded your quota for the requested resource.",
                }
            ]
        }
        assert throttled.headers["x-amzn-RateLimit-Limit"] == "2" and throttled.headers["x-amzn-RequestId"]
        inv = sdk_client(Inventories, server.base_url)
        with pytest.raises(SellingApiRequestThrottledException):
            for _ in range(20):
                inv.get_inventory_summary_marketplace(marketplaceIds=[AMAZON_MARKETPLACE])
    finally:
        server.stop()


def test_missing_required_parameters_and_bad_token(amazon):
    url = f"{amazon.base_url}/fba/inventory/v1/summaries"
    r = HTTP.get(
        url, params={"marketplaceIds": AMAZON_MARKETPLACE}, headers={"x-amz-access-token": "sim-amazon-token"}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "InvalidInput"
    r = HTTP.get(url, params={"marketplaceIds": AMAZON_MARKETPLACE}, headers={"x-amz-access-token": "wrong"})
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "Unauthorized"
    bad = sdk_client(Inventories, amazon.base_url, {**CREDS, "refresh_token": "stolen"})
    with pytest.raises(Exception) as exc:  # the SDK's AuthorizationError from the LWA exchange
        bad.get_inventory_summary_marketplace(marketplaceIds=[AMAZON_MARKETPLACE])
    assert "invalid_grant" in str(exc.value.args)


def test_listing_patch_is_accepted_then_applied_asynchronously(amazon, big_world):
    li = sdk_client(ListingsItems, amazon.base_url)
    lst = next(
        x for x in big_world.catalog.listings_for("amazon") if x.channel_location == AMAZON_MFN_CHANNEL
    )
    before = li.get_listings_item(
        AMAZON_SELLER_ID,
        lst.channel_sku,
        marketplaceIds=[AMAZON_MARKETPLACE],
        includedData=["fulfillmentAvailability"],
    ).payload
    old = before["fulfillmentAvailability"][0]["quantity"]
    assert old == big_world.amazon_mfn[lst.channel_sku]["quantity"]
    body = {
        "productType": "PRODUCT",
        "patches": [
            {
                "op": "merge",
                "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": old + 9}],
            }
        ],
    }
    res = li.patch_listings_item(
        AMAZON_SELLER_ID, lst.channel_sku, marketplaceIds=[AMAZON_MARKETPLACE], body=body
    )
    assert res.payload["status"] == "ACCEPTED" and res.payload["issues"] == [] and res.payload["submissionId"]

    def read():
        return li.get_listings_item(
            AMAZON_SELLER_ID,
            lst.channel_sku,
            marketplaceIds=[AMAZON_MARKETPLACE],
            includedData=["fulfillmentAvailability"],
        ).payload["fulfillmentAvailability"][0]

    assert read()["quantity"] == old, "not visible yet"
    time.sleep(0.25)
    assert read() == {"fulfillmentChannelCode": "DEFAULT", "quantity": old + 9}


def test_listing_errors(amazon):
    li = sdk_client(ListingsItems, amazon.base_url)
    with pytest.raises(Exception) as exc:
        li.get_listings_item(AMAZON_SELLER_ID, "NO-SUCH-SKU", marketplaceIds=[AMAZON_MARKETPLACE])
    assert getattr(exc.value, "code", None) == 404
    with pytest.raises(SellingApiForbiddenException):
        bad = sdk_client(ListingsItems, amazon.base_url)
        bad.restricted_data_token = "not-a-token"  # the SDK sends this instead of the LWA token
        bad.get_listings_item(AMAZON_SELLER_ID, "SKU-00001", marketplaceIds=[AMAZON_MARKETPLACE])
