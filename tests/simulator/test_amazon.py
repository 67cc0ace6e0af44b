"""Amazon SP-API simulator, driven through `python-amazon-sp-api` (`sp_api.api.Inventories`, `ListingsItems`).

The SDK takes its host from the marketplace; the client's `endpoint` attribute is set to the simulator
after construction.  The LWA token exchange goes to the simulator too, through the SDK's own
`auth_token_client_class` hook (an `AccessTokenClient` with another `scheme`/`host`).
"""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest

# The official SDK is a test-only dependency (`pip install python-amazon-sp-api`).
pytest.importorskip("sp_api", reason="needs the official SDK: pip install python-amazon-sp-api")
from sp_api.api import Inventories, ListingsItems
from sp_api.auth import AccessTokenClient
from sp_api.auth.access_token_client import cache as lwa_cache
from sp_api.base import Marketplaces, SellingApiBadRequestException, SellingApiForbiddenException
from sp_api.base.exceptions import SellingApiRequestThrottledException

from simulator import FaultPlan, World
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


# -- searchListingsItems -------------------------------------------------------------------------

SEARCH_URL = "/listings/2021-08-01/items/" + AMAZON_SELLER_ID
TOKEN = {"x-amz-access-token": "sim-amazon-token"}


def mfn_skus(world):
    return sorted(
        x.channel_sku
        for x in world.catalog.listings_for("amazon")
        if x.channel_location == AMAZON_MFN_CHANNEL
    )


def search_all(li, **kwargs):
    """Every page of one search through the SDK: (items, pages, numberOfResults of the first page)."""
    res = li.search_listings_items(AMAZON_SELLER_ID, marketplaceIds=[AMAZON_MARKETPLACE], **kwargs)
    items, pages, total = list(res.payload["items"]), 1, res.payload["numberOfResults"]
    while res.next_token:
        res = li.search_listings_items(
            AMAZON_SELLER_ID, marketplaceIds=[AMAZON_MARKETPLACE], pageToken=res.next_token, **kwargs
        )
        items += res.payload["items"]
        pages += 1
    return items, pages, total


def updated(item):
    return item["summaries"][0]["lastUpdatedDate"]


def test_search_pages_through_every_offer_in_the_get_listings_item_shape(amazon, big_world):
    li = sdk_client(ListingsItems, amazon.base_url)
    items, pages, total = search_all(
        li, includedData="summaries,fulfillmentAvailability", pageSize=20, sortOrder="ASC"
    )
    skus = mfn_skus(big_world)
    assert total == len(skus) and pages == -(-len(skus) // 20) and pages > 1
    assert sorted(i["sku"] for i in items) == skus and len(items) == len(skus)
    stamps = [(updated(i), i["sku"]) for i in items]
    assert stamps == sorted(stamps)  # sortBy defaults to lastUpdatedDate; ASC as asked
    one = li.get_listings_item(
        AMAZON_SELLER_ID,
        items[0]["sku"],
        marketplaceIds=[AMAZON_MARKETPLACE],
        includedData="summaries,fulfillmentAvailability",
    ).payload
    assert items[0] == one
    for item in items:
        assert item["fulfillmentAvailability"] == [
            {"fulfillmentChannelCode": "DEFAULT", "quantity": big_world.amazon_mfn[item["sku"]]["quantity"]}
        ]
        assert item["summaries"][0]["createdDate"] <= updated(item)


def test_search_defaults_newest_first_ten_a_page(amazon, big_world):
    r = HTTP.get(
        f"{amazon.base_url}{SEARCH_URL}", params={"marketplaceIds": AMAZON_MARKETPLACE}, headers=TOKEN
    )
    body = r.json()
    assert r.status_code == 200 and r.headers["x-amzn-RateLimit-Limit"] == "500"
    assert len(body["items"]) == 10 and body["numberOfResults"] == len(mfn_skus(big_world))
    assert set(body["items"][0]) == {"sku", "summaries"}  # includedData defaults to summaries
    stamps = [(updated(i), i["sku"]) for i in body["items"]]
    assert stamps == sorted(stamps, reverse=True)
    assert body["pagination"]["nextToken"] and "previousToken" not in body["pagination"]
    second = HTTP.get(
        f"{amazon.base_url}{SEARCH_URL}",
        params={"marketplaceIds": AMAZON_MARKETPLACE, "pageToken": body["pagination"]["nextToken"]},
        headers=TOKEN,
    ).json()
    assert second["pagination"]["previousToken"]
    assert {i["sku"] for i in second["items"]}.isdisjoint(i["sku"] for i in body["items"])


def test_search_filters_by_last_update_and_by_sku(amazon, big_world):
    li = sdk_client(ListingsItems, amazon.base_url)
    skus = mfn_skus(big_world)
    cut = max(rec["updated"] for rec in big_world.amazon_mfn.values())
    body = {
        "productType": "PRODUCT",
        "patches": [
            {
                "op": "merge",
                "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 77}],
            }
        ],
    }
    big_world.tick(5)  # the clock moves on: the patch is applied after `cut`
    li.patch_listings_item(AMAZON_SELLER_ID, skus[3], marketplaceIds=[AMAZON_MARKETPLACE], body=body)
    time.sleep(0.25)
    after = (cut + timedelta(milliseconds=1)).isoformat()
    items, _, total = search_all(li, lastUpdatedAfter=after, includedData="fulfillmentAvailability")
    changed = {s for s, rec in big_world.amazon_mfn.items() if rec["updated"] > cut}
    assert skus[3] in changed and total == len(changed) == len(items)
    assert {i["sku"] for i in items} == changed
    assert next(i for i in items if i["sku"] == skus[3])["fulfillmentAvailability"][0]["quantity"] == 77
    # "at or after" / "at or before": the boundary itself is inside
    at = big_world.amazon_mfn[skus[3]]["updated"].isoformat()
    items, _, _ = search_all(li, lastUpdatedAfter=at, lastUpdatedBefore=at)
    assert skus[3] in {i["sku"] for i in items}
    items, _, _ = search_all(li, lastUpdatedBefore=cut.isoformat(), pageSize=20)
    assert len(items) == len(skus) - len(changed)
    picked = ",".join(skus[:5])
    items, _, total = search_all(li, identifiers=picked, identifiersType="SKU")
    assert sorted(i["sku"] for i in items) == skus[:5] and total == 5
    asin = big_world.catalog.amazon_asins[skus[7]]
    items, _, _ = search_all(li, identifiers=asin, identifiersType="ASIN")
    assert [i["sku"] for i in items] == [skus[7]]
    items, _, total = search_all(li, createdAfter=big_world.now.isoformat())
    assert items == [] and total == 0  # every simulated listing was created when the world was seeded
    assert search_all(li, withoutStatus="BUYABLE")[2] == 0
    assert search_all(li, withStatus="BUYABLE")[2] == len(skus)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"pageSize": "21"}, "pageSize"),
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "ten"}, "pageSize"),
        ({"identifiers": "SKU-00001"}, "identifiersType is required"),
        ({"identifiersType": "SKU"}, "identifiers is required"),
        (
            {"identifiers": ",".join(f"SKU-{i:05d}" for i in range(21)), "identifiersType": "SKU"},
            "at most 20",
        ),
        ({"identifiers": "SKU-00001", "identifiersType": "PARTNUMBER"}, "identifiersType"),
        ({"lastUpdatedAfter": "yesterday"}, "lastUpdatedAfter"),
        ({"createdBefore": "2026-13-01T00:00:00Z"}, "createdBefore"),
        ({"sortBy": "price"}, "sortBy"),
        ({"sortOrder": "UP"}, "sortOrder"),
        ({"includedData": "summaries,everything"}, "includedData"),
        ({"withStatus": "SOLD"}, "withStatus"),
        ({"marketplaceIds": "A1F83G8C2ARO7P"}, "marketplace"),
        ({"marketplaceIds": f"{AMAZON_MARKETPLACE},A1F83G8C2ARO7P"}, "exactly one"),
        ({"marketplaceIds": None}, "marketplaceIds"),
        ({"pageToken": "not-a-token"}, "pageToken"),
    ],
)
def test_search_rejects_invalid_input(amazon, params, message):
    query = {k: v for k, v in {"marketplaceIds": AMAZON_MARKETPLACE, **params}.items() if v is not None}
    r = HTTP.get(f"{amazon.base_url}{SEARCH_URL}", params=query, headers=TOKEN)
    assert r.status_code == 400, r.text
    (error,) = r.json()["errors"]
    assert error["code"] == "InvalidInput" and message in error["message"]


def test_search_errors_through_the_sdk(amazon):
    li = sdk_client(ListingsItems, amazon.base_url)
    with pytest.raises(SellingApiBadRequestException) as exc:
        li.search_listings_items(AMAZON_SELLER_ID, marketplaceIds=[AMAZON_MARKETPLACE], pageSize=21)
    assert exc.value.code == 400
    with pytest.raises(SellingApiBadRequestException):
        li.search_listings_items("SOMEONE-ELSE", marketplaceIds=[AMAZON_MARKETPLACE])


def test_search_page_token_belongs_to_its_query(amazon):
    url = f"{amazon.base_url}{SEARCH_URL}"
    query = {"marketplaceIds": AMAZON_MARKETPLACE, "pageSize": "5", "sortOrder": "ASC"}
    token = HTTP.get(url, params=query, headers=TOKEN).json()["pagination"]["nextToken"]
    again = HTTP.get(url, params={**query, "pageToken": token}, headers=TOKEN)
    retry = HTTP.get(url, params={**query, "pageToken": token}, headers=TOKEN)  # a retried page
    assert again.status_code == retry.status_code == 200 and again.json()["items"] == retry.json()["items"]
    other = HTTP.get(url, params={**query, "sortOrder": "DESC", "pageToken": token}, headers=TOKEN)
    assert other.status_code == 400 and "pageToken" in other.json()["errors"][0]["message"]


def test_search_pages_through_at_most_the_limit(amazon, big_world, monkeypatch):
    import simulator.channels.amazon as module

    monkeypatch.setattr(module, "SEARCH_LIMIT", 30)  # Amazon's is 1,000; the world has fewer offers
    li = sdk_client(ListingsItems, amazon.base_url)
    items, pages, total = search_all(li, pageSize=20, sortOrder="ASC")
    assert total == len(mfn_skus(big_world)) > 30
    assert len(items) == 30 and pages == 2  # then no nextToken, although numberOfResults says more


def test_search_has_its_own_rate_limit(big_world):
    server = ChannelServer(AmazonApp(big_world)).start()  # the documented 5 req/s, burst 5
    try:
        url = f"{server.base_url}{SEARCH_URL}"
        replies = []
        while len(replies) < 30 and (not replies or replies[-1].status_code == 200):
            replies.append(HTTP.get(url, params={"marketplaceIds": AMAZON_MARKETPLACE}, headers=TOKEN))
        assert len(replies) >= 6 and all(r.status_code == 200 for r in replies[:5])
        assert replies[-1].status_code == 429 and replies[-1].headers["x-amzn-RateLimit-Limit"] == "5"
        assert replies[-1].json()["errors"][0]["code"] == "QuotaExceeded"
        # getListingsItem keeps its own bucket
        sku = mfn_skus(big_world)[0]
        got = HTTP.get(f"{url}/{sku}", params={"marketplaceIds": AMAZON_MARKETPLACE}, headers=TOKEN)
        assert got.status_code == 200
    finally:
        server.stop()


def test_search_under_page_faults_still_reaches_every_offer(amazon, big_world):
    big_world.set_faults("amazon", FaultPlan(truncate_page="short_with_next", truncate_rate=1.0))
    li = sdk_client(ListingsItems, amazon.base_url)
    items, pages, _ = search_all(li, pageSize=20)
    assert sorted(i["sku"] for i in items) == mfn_skus(big_world)
    assert pages > -(-len(items) // 20)  # some pages were short but kept the token going
    big_world.set_faults("amazon", FaultPlan(error_rate={500: 1.0}))
    r = HTTP.get(
        f"{amazon.base_url}{SEARCH_URL}", params={"marketplaceIds": AMAZON_MARKETPLACE}, headers=TOKEN
    )
    assert r.status_code == 500 and r.json()["errors"][0]["code"] == "InternalFailure"
