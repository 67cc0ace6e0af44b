"""Amazon Selling Partner API client: FBA summaries and MFN listing quantities in, MFN quantities out.

Owns the FBA Inventory v1 and Listings Items 2021-08-01 requests, `nextToken`/`pageToken` pagination
(merchant-fulfilled offers are read with `searchListingsItems`, only changed ones after the first run),
pacing at each operation's documented rate (lowered or raised by `x-amzn-RateLimit-Limit`), and the
push as a `merge` patch of `fulfillment_availability`. Amazon has no guard and applies patches asynchronously,
so a push reads first and verifies after; `ACCEPTED` alone is `unknown` (channel-apis.md §3).
Movement history is not in these APIs, so this client produces levels only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

from .base import ChannelClient, Entity, LevelTarget, PushResult, Record, as_decimal, as_timedelta, integral
from .http import (
    UNKEYED_WRITE,
    ApiResponse,
    BadResponse,
    ChannelError,
    ChannelHttp,
    Pacer,
    format_timestamp,
    parse_timestamp,
)

SUMMARIES_PATH = "/fba/inventory/v1/summaries"
LISTINGS_PATH = "/listings/2021-08-01/items/{seller}"
# Documented default rates (requests per second) per operation.
RATES = {"getInventorySummaries": 2.0, "getListingsItem": 5.0, "patchListingsItem": 5.0,
         "searchListingsItems": 5.0}
# searchListingsItems: at most 20 items a page, and "the maximum number of items (SKUs) that can be
# returned and paged through is 1000" per search (numberOfResults still counts every match).
SEARCH_PAGE_SIZE = 20
SEARCH_LIMIT = 1000
SEARCH_IDENTIFIERS = 20  # identifiers per request (identifiersType=SKU)


class AmazonClient(ChannelClient):
    """`AmazonClient(base_url, token, seller_id, marketplace_id="ATVPDKIKX0DER", mfn_skus=(), lookback=1h)`.

    Token in `x-amz-access-token` (env AMAZON_SP_ACCESS_TOKEN). Level targets are
    `(seller SKU, fulfillment channel code)`, e.g. `("SKU-1", "DEFAULT")` for the merchant-fulfilled
    offer; FBA quantities are Amazon's own and cannot be pushed. `mfn_skus` names the merchant-fulfilled
    listings to read (the `listings` rows whose channel_location is a fulfillment channel code); empty
    means every listing that reports a fulfillment availability. After the first run the listing read
    asks only for listings updated since the newest one loaded, less `lookback` (seconds in the YAML)."""

    channel: ClassVar[str] = "amazon"
    entities: ClassVar[tuple[Entity, ...]] = (
        Entity("inventory_summaries", "levels", "read_levels"),
        Entity("listings_items", "levels", "read_listings"),
    )

    def __init__(self, base_url: str, token: str, *, seller_id: str, marketplace_id: str = "ATVPDKIKX0DER",
                 mfn_skus: Sequence[str] = (), product_type: str = "PRODUCT", verify_attempts: int = 0,
                 verify_delay: float = 1.0, settle_after: float = 120.0, rate_scale: float = 1.0,
                 lookback: timedelta | float = timedelta(hours=1), **http_options: Any) -> None:
        if not token:
            raise ValueError("amazon: an access token is required (AMAZON_SP_ACCESS_TOKEN)")
        if not seller_id:
            raise ValueError("amazon: seller_id is required")
        self.http = ChannelHttp(self.channel, base_url, headers={"x-amz-access-token": token},
                                secrets=[token], **http_options)
        self.seller_id = seller_id
        self.marketplace_id = marketplace_id
        self.product_type = product_type
        self.mfn_skus = list(mfn_skus)
        # Re-read window of the incremental listing read: a change Amazon indexes late still lands.
        self.lookback = as_timedelta(lookback)
        # Amazon applies an ACCEPTED patch minutes later. By default the push does not wait: the correction
        # stays in flight and the next push run settles it by reading the offer back, after `settle_after`
        # seconds. `verify_attempts` > 0 reads back right away that many times, `verify_delay` apart.
        self.verify_attempts = verify_attempts
        self.verify_delay = verify_delay
        self.settle_after = settle_after
        # rate_scale > 1 for selling partners on a raised usage plan (Amazon grants them on request).
        self._pacers = {op: Pacer(rate * rate_scale, sleep=self.http.sleep) for op, rate in RATES.items()}

    def _call(self, op: str, method: str, path: str, **kw: Any) -> ApiResponse:
        pacer = self._pacers[op]
        pacer.wait()
        answer = self.http.request(method, path, what=op, **kw)
        limit = answer.headers.get("x-amzn-ratelimit-limit")
        try:
            if limit and float(limit) > 0:
                pacer.rate = float(limit)
        except ValueError:
            pass  # a malformed hint is ignored; the documented rate stays
        if not isinstance(answer.data, dict):
            raise BadResponse(self.channel, f"{op}: answer is not a JSON object", status=answer.status)
        return answer

    def _item_path(self, sku: str) -> str:
        return f"{LISTINGS_PATH.format(seller=quote(self.seller_id, safe=''))}/{quote(sku, safe='')}"

    # ------------------------------------------------------------------ reads

    def read_levels(self, since: datetime | None = None) -> Iterator[Record]:
        """FBA inventory summaries (with details) changed since `since`, all pages."""
        params: dict[str, Any] = {"details": "true", "granularityType": "Marketplace",
                                  "granularityId": self.marketplace_id, "marketplaceIds": self.marketplace_id}
        if since is not None:
            # Amazon wants startDateTime repeated with every nextToken.
            params["startDateTime"] = format_timestamp(since)
        seen: set[str] = set()
        token: str | None = None
        while True:
            answer = self._call("getInventorySummaries", "GET", SUMMARIES_PATH,
                                params={**params, **({"nextToken": token} if token else {})})
            summaries = (answer.data.get("payload") or {}).get("inventorySummaries")
            if not isinstance(summaries, list):
                raise BadResponse(self.channel, "getInventorySummaries: no inventorySummaries list")
            for s in summaries:
                sid = f"{s.get('sellerSku')}|{self.marketplace_id}|{s.get('lastUpdatedTime')}"
                yield Record(sid, parse_timestamp(s.get("lastUpdatedTime")),
                             {**s, "marketplaceId": self.marketplace_id})
            token = self._next_token(answer, seen, "getInventorySummaries: nextToken repeats")
            if not token:
                return

    def read_listings(self, since: datetime | None = None) -> Iterator[Record]:
        """Merchant-fulfilled offers (summaries and fulfillment availability) via searchListingsItems.

        The first run (`since` None) reads every listing; later runs only those updated at or after
        `since - lookback` (`since` is the newest lastUpdatedDate loaded), oldest first, 20 a page.
        A search pages through at most 1,000 items, so a longer read continues with a new search from
        the newest lastUpdatedDate reached. Only `mfn_skus` are kept when configured, otherwise every
        listing with a fulfillment availability. An unchanged listing keeps its source id (SKU + last
        update), so the lookback's re-reads load once."""
        after = None if since is None else since - self.lookback
        wanted = set(self.mfn_skus)
        loaded: set[str] = set()  # source ids yielded by this read (windows overlap at their edges)
        while True:
            received, oldest, newest, meta = 0, None, None, {}
            params = {"lastUpdatedAfter": format_timestamp(after)} if after is not None else {}
            for item in self._search_listings(params, meta):
                received += 1
                record = self._listing_record(item)
                if record.cursor_at is not None:
                    oldest = record.cursor_at if oldest is None else min(oldest, record.cursor_at)
                    newest = record.cursor_at if newest is None else max(newest, record.cursor_at)
                if record.source_id not in loaded and self._keep_listing(item, wanted):
                    loaded.add(record.source_id)
                    yield record
            capped = received >= SEARCH_LIMIT
            # Fewer items than numberOfResults: the pages ended early; continue like a capped search.
            short = isinstance(meta.get("numberOfResults"), int) and meta["numberOfResults"] > received
            if not capped and not short:
                return
            if newest is not None and (after is None or newest > after) and not (capped and oldest == newest):
                after = newest  # lastUpdatedAfter is "at or after": the edge is re-read, not skipped
                continue
            if not capped:
                return  # a short answer that no later date window can extend
            # Over 1,000 listings share one lastUpdatedDate (a bulk upload): no date window gets past
            # them, so read the configured SKUs by identifier instead.
            if not wanted:
                raise BadResponse(self.channel, f"searchListingsItems: more than {SEARCH_LIMIT} listings were "
                                  f"last updated at {format_timestamp(newest) if newest else 'one time'}; "
                                  "configure mfn_skus to read them by SKU")
            for item in self._listings_by_sku(self.mfn_skus):
                record = self._listing_record(item)
                if record.source_id not in loaded and self._keep_listing(item, wanted):
                    loaded.add(record.source_id)
                    yield record
            return

    def _keep_listing(self, item: dict[str, Any], wanted: set[str]) -> bool:
        if wanted:
            return item.get("sku") in wanted
        return bool(item.get("fulfillmentAvailability"))

    def _listings_by_sku(self, skus: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The current listings of these SKUs, 20 identifiers a search."""
        for i in range(0, len(skus), SEARCH_IDENTIFIERS):
            batch = skus[i:i + SEARCH_IDENTIFIERS]
            yield from self._search_listings({"identifiers": ",".join(batch), "identifiersType": "SKU"})

    def _search_listings(self, filters: dict[str, Any],
                         meta: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """One searchListingsItems query, every page, oldest update first; `meta` receives the last page's
        numberOfResults. The query is repeated with every pageToken (a token belongs to its query)."""
        path = LISTINGS_PATH.format(seller=quote(self.seller_id, safe=""))
        params = {"marketplaceIds": self.marketplace_id, "includedData": "summaries,fulfillmentAvailability",
                  "pageSize": SEARCH_PAGE_SIZE, "sortBy": "lastUpdatedDate", "sortOrder": "ASC", **filters}
        seen: set[str] = set()
        token: str | None = None
        while True:
            answer = self._call("searchListingsItems", "GET", path,
                                params={**params, **({"pageToken": token} if token else {})})
            items = answer.data.get("items")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise BadResponse(self.channel, "searchListingsItems: no items list", status=answer.status)
            if meta is not None:
                total = answer.data.get("numberOfResults")
                meta["numberOfResults"] = total if isinstance(total, int) and not isinstance(total, bool) else None
            yield from items
            token = self._next_token(answer, seen, "searchListingsItems: pageToken repeats")
            if not token:
                return

    def _next_token(self, answer: ApiResponse, seen: set[str], repeated: str) -> str | None:
        """The page's `pagination.nextToken` (None on the last page); a token seen before is an error."""
        token = (answer.data.get("pagination") or {}).get("nextToken")
        if token and token in seen:
            raise BadResponse(self.channel, repeated)
        if token:
            seen.add(token)
        return token or None

    def _listing_record(self, item: dict[str, Any]) -> Record:
        summary = next((s for s in item.get("summaries") or [] if s.get("marketplaceId") == self.marketplace_id),
                       None) or {}
        updated = summary.get("lastUpdatedDate")
        return Record(f"{item.get('sku')}|{self.marketplace_id}|{updated}", parse_timestamp(updated),
                      {**item, "marketplaceId": self.marketplace_id})

    def _get_item(self, sku: str) -> dict[str, Any]:
        return self._call("getListingsItem", "GET", self._item_path(sku), params={
            "marketplaceIds": self.marketplace_id, "includedData": "summaries,fulfillmentAvailability"}).data

    def _quantity(self, item: dict[str, Any], channel_code: str) -> Decimal | None:
        return next((as_decimal(f.get("quantity")) for f in item.get("fulfillmentAvailability") or []
                     if f.get("fulfillmentChannelCode") == channel_code), None)

    def read_level(self, target: LevelTarget) -> Decimal | None:
        """The offer's quantity for that fulfillment channel, as Amazon shows it now."""
        return self._quantity(self._get_item(target.channel_sku), target.channel_location)

    # ------------------------------------------------------------------ writes

    def set_level(self, target: LevelTarget, from_quantity: Decimal | None, to_quantity: Decimal,
                  idempotency_key: str, *, as_of: datetime | None = None) -> PushResult:
        """Merge the new quantity into `fulfillment_availability` after checking the current one.

        Amazon has no idempotency key or compare-and-set: a dropped patch is never resent here;
        `unknown` results are settled by `read_level`. `idempotency_key` and `as_of` cannot be sent."""
        to_int = integral(Decimal(to_quantity))
        if to_int is None or to_int < 0:
            return PushResult("rejected", None, "amazon quantities are whole, non-negative units")

        def push() -> PushResult:
            item = self._get_item(target.channel_sku)
            current = self._quantity(item, target.channel_location)
            if current == to_int:
                return PushResult("applied", 200, "already at the target quantity", current)
            if current != (Decimal(from_quantity) if from_quantity is not None else None):
                return PushResult("stale", 200, f"quantity is {current}, expected {from_quantity}", current)
            product_type = next((s.get("productType") for s in item.get("summaries") or []
                                 if s.get("productType")), self.product_type)
            answer = self._call("patchListingsItem", "PATCH", self._item_path(target.channel_sku),
                                mode=UNKEYED_WRITE, params={"marketplaceIds": self.marketplace_id},
                                json_body={"productType": product_type, "patches": [{
                                    "op": "merge", "path": "/attributes/fulfillment_availability",
                                    "value": [{"fulfillment_channel_code": target.channel_location,
                                               "quantity": to_int}]}]})
            status = answer.data.get("status")
            issues = [i for i in answer.data.get("issues") or [] if i.get("severity") == "ERROR"]
            if status == "INVALID" or issues:
                detail = "; ".join(f"{i.get('code')}: {i.get('message')}" for i in issues) or "INVALID"
                return PushResult("rejected", answer.status, self.http.redact(detail))
            if status != "ACCEPTED":
                return PushResult("unknown", answer.status, f"unexpected submission status {status!r}")
            if not self.verify_attempts:
                return PushResult("accepted", answer.status,
                                  f"ACCEPTED; read back after {self.settle_after:g}s to settle")
            return self._verify(target, to_int, answer.status)

        return self._guarded_push(push)

    def _verify(self, target: LevelTarget, to_quantity: int, status: int) -> PushResult:
        """ACCEPTED is only queued: read back a few times; still different means `unknown`."""
        observed = None
        for attempt in range(self.verify_attempts):
            if attempt:
                self.http.sleep(self.verify_delay)
            try:
                observed = self.read_level(target)
            except ChannelError as exc:
                # The patch was accepted: a failed read-back leaves the outcome open, not failed.
                return PushResult("unknown", status, f"ACCEPTED; read-back failed: {exc}", None)
            if observed == to_quantity:
                return PushResult("applied", status, "verified by read-back", observed)
        return PushResult("unknown", status, "ACCEPTED but not visible yet; settle with read_level", observed)
