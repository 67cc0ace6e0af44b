"""Amazon Selling Partner API client: FBA summaries and MFN listing quantities in, MFN quantities out.

Owns the FBA Inventory v1 and Listings Items 2021-08-01 requests, `nextToken` pagination, pacing at
each operation's documented rate (lowered or raised by `x-amzn-RateLimit-Limit`), and the push as a
`merge` patch of `fulfillment_availability`. Amazon has no guard and applies patches asynchronously,
so a push reads first and verifies after; `ACCEPTED` alone is `unknown` (channel-apis.md §3).
Movement history is not in these APIs, so this client produces levels only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

from .base import ChannelClient, Entity, LevelTarget, PushResult, Record, as_decimal, integral
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
RATES = {"getInventorySummaries": 2.0, "getListingsItem": 5.0, "patchListingsItem": 5.0}


class AmazonClient(ChannelClient):
    """`AmazonClient(base_url, token, seller_id, marketplace_id="ATVPDKIKX0DER", mfn_skus=())`.

    Token in `x-amz-access-token` (env AMAZON_SP_ACCESS_TOKEN). Level targets are
    `(seller SKU, fulfillment channel code)`, e.g. `("SKU-1", "DEFAULT")` for the merchant-fulfilled
    offer; FBA quantities are Amazon's own and cannot be pushed. `mfn_skus` names the merchant-fulfilled
    listings to read (the `listings` rows whose channel_location is a fulfillment channel code)."""

    channel: ClassVar[str] = "amazon"
    entities: ClassVar[tuple[Entity, ...]] = (
        Entity("inventory_summaries", "levels", "read_levels"),
        Entity("listings_items", "levels", "read_listings"),
    )

    def __init__(self, base_url: str, token: str, *, seller_id: str, marketplace_id: str = "ATVPDKIKX0DER",
                 mfn_skus: Sequence[str] = (), product_type: str = "PRODUCT", verify_attempts: int = 3,
                 verify_delay: float = 1.0, rate_scale: float = 1.0, **http_options: Any) -> None:
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
        self.verify_attempts = verify_attempts
        self.verify_delay = verify_delay
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
            token = (answer.data.get("pagination") or {}).get("nextToken")
            if not token:
                return
            if token in seen:
                raise BadResponse(self.channel, "getInventorySummaries: nextToken repeats")
            seen.add(token)

    def read_listings(self, since: datetime | None = None) -> Iterator[Record]:
        """Fulfillment availability (the MFN quantity) of every configured merchant-fulfilled SKU.

        `since` is not used: the listing read has no change filter; an unchanged listing keeps its
        source id (SKU + last update) and loads once."""
        for sku in self.mfn_skus:
            yield self._listing_record(self._get_item(sku))

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
