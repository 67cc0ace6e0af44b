"""Amazon Selling Partner API over the shared world (channel-apis.md §3).

FBA Inventory v1 `GET /fba/inventory/v1/summaries` (FBA-US stock, `nextToken` pages that expire),
Listings Items 2021-08-01 `PATCH`/`GET /listings/2021-08-01/items/{sellerId}/{sku}` (merchant-fulfilled
quantity; a patch is only ACCEPTED and applied after `apply_delay` seconds) and
`GET /listings/2021-08-01/items/{sellerId}` (searchListingsItems: filters, sorting, `pageToken` pages,
at most 1,000 items paged through per search), and the LWA token exchange `POST /auth/o2/token`.
Only the merchant-fulfilled offers are listings items here (FBA stock is served by the summaries).
Per-operation token buckets answer 429 `QuotaExceeded` with `x-amzn-RateLimit-Limit`.  A bad access
token gets the SP-API's 403 `Unauthorized`, as the real service answers (it does not use 401).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

from ..faults import page_bounds
from ..scenario import AMAZON_MARKETPLACE, AMAZON_MFN_CHANNEL, AMAZON_SELLER_ID
from ..world import World, iso, parse_ts
from .base import BadRequest, ChannelApp, Request, Response
from .square import TokenBucket

# (rate per second, burst) per operation, from the SP-API models.
RATES = {
    "getInventorySummaries": (2.0, 2.0),
    "getListingsItem": (5.0, 10.0),
    "patchListingsItem": (5.0, 5.0),
    "searchListingsItems": (5.0, 5.0),
}
PAGE_SIZE = 50
LISTING_PATH = re.compile(r"^/listings/2021-08-01/items/([^/]+)/([^/]+)$")
SEARCH_PATH = re.compile(r"^/listings/2021-08-01/items/([^/]+)$")
# searchListingsItems (Listings Items 2021-08-01 model): pageSize default 10, maximum 20; "the maximum
# number of items (SKUs) that can be returned and paged through is 1000" (numberOfResults counts all).
SEARCH_PAGE_DEFAULT, SEARCH_PAGE_MAX, SEARCH_LIMIT = 10, 20, 1000
INCLUDED_DATA = (
    "summaries",
    "attributes",
    "issues",
    "offers",
    "fulfillmentAvailability",
    "procurement",
    "relationships",
    "productTypes",
)
IDENTIFIER_TYPES = ("ASIN", "EAN", "FNSKU", "GTIN", "ISBN", "JAN", "MINSAN", "SKU", "UPC")
LISTING_STATUSES = ("BUYABLE", "DISCOVERABLE")


def _errors(code: str, message: str, details: str = "") -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "details": details}]}


class AmazonApp(ChannelApp):
    name = "amazon"

    def __init__(
        self,
        world: World,
        token: str | None = None,
        rate_scale: float = 1.0,
        apply_delay: float = 2.0,
        next_token_ttl: float = 30.0,
        refresh_token: str | None = None,
    ) -> None:
        super().__init__(world, token)
        self.refresh_token = (
            refresh_token
            or os.environ.get("INVENTORY_SYNC_SIM_AMAZON_REFRESH_TOKEN")
            or "sim-amazon-refresh-token"
        )
        self.buckets = {op: TokenBucket(r * rate_scale, b * rate_scale) for op, (r, b) in RATES.items()}
        self.apply_delay, self.next_token_ttl = apply_delay, next_token_ttl
        self._tokens: dict[str, tuple[float, str, int]] = {}  # nextToken -> (created, fingerprint, offset)
        self._pending: list[tuple[float, str, int]] = []  # (apply at, seller sku, quantity)
        self._ids = random.Random(f"amazon:{world.scenario.seed}")
        self._fba = {
            x.channel_sku: x
            for x in world.catalog.listings_for(self.name)
            if x.channel_location == AMAZON_MARKETPLACE
        }
        self._mfn = {
            x.channel_sku: x
            for x in world.catalog.listings_for(self.name)
            if x.channel_location == AMAZON_MFN_CHANNEL
        }

    # -- shapes ---------------------------------------------------------------------------------
    def authorized(self, req: Request) -> bool:
        return req.header("x-amz-access-token") == self.token

    def is_public(self, req: Request) -> bool:
        return req.path == "/auth/o2/token"

    def unauthorized(self, req: Request) -> Response:
        return Response(
            403,
            _errors(
                "Unauthorized",
                "Access to requested resource is denied.",
                "The access token you provided is revoked, malformed or invalid.",
            ),
        )

    def server_error(self, status: int) -> Response:
        if status == 503:
            return Response(
                503, _errors("ServiceUnavailable", "Service temporarily unavailable. Please try again.")
            )
        return Response(
            status, _errors("InternalFailure", "We encountered an internal error. Please try again.")
        )

    def throttled(self, retry_after: float | None, op: str | None = None) -> Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        if op:
            headers["x-amzn-RateLimit-Limit"] = f"{self.buckets[op].rate:g}"
        return Response(
            429, _errors("QuotaExceeded", "You exceeded your quota for the requested resource."), headers
        )

    def bad_request(self, exc: BadRequest) -> Response:
        return Response(exc.status, _errors(exc.extra.get("code", "InvalidInput"), exc.message))

    def decorate(self, req: Request, resp: Response) -> None:
        resp.headers["x-amzn-RequestId"] = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _new_id(self) -> str:
        return uuid.UUID(int=self._ids.getrandbits(128), version=4).hex

    # -- routing --------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        self._apply_due()
        if req.path == "/auth/o2/token" and req.method == "POST":
            return self._lwa(req)
        if req.path == "/fba/inventory/v1/summaries" and req.method == "GET":
            return self._limited("getInventorySummaries", req, self._summaries)
        search = SEARCH_PATH.match(req.path)
        if search and req.method == "GET":
            return self._limited("searchListingsItems", req, lambda r: self._search(r, search.group(1)))
        m = LISTING_PATH.match(req.path)
        if m and req.method == "GET":
            return self._limited("getListingsItem", req, lambda r: self._get_listing(r, *m.groups()))
        if m and req.method == "PATCH":
            return self._limited("patchListingsItem", req, lambda r: self._patch_listing(r, *m.groups()))
        return Response(404, _errors("NotFound", "Resource not found."))

    def _limited(self, op: str, req: Request, fn) -> Response:
        if not self.buckets[op].take():
            return self.throttled(None, op)
        resp = fn(req)
        resp.headers["x-amzn-RateLimit-Limit"] = f"{self.buckets[op].rate:g}"
        return resp

    def _apply_due(self) -> None:
        now = time.monotonic()
        due = [p for p in self._pending if p[0] <= now]
        self._pending = [p for p in self._pending if p[0] > now]
        for _, sku, qty in due:
            lst = self._mfn[sku]
            rec = self.world.amazon_mfn[sku]
            rec["quantity"] = self.world.uom_unview(self.name, lst.sku, qty)
            rec["updated"] = self.world.now

    # -- LWA ------------------------------------------------------------------------------------
    def _lwa(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        grant = form.get("grant_type")
        ok = (grant == "refresh_token" and form.get("refresh_token") == self.refresh_token) or (
            grant == "client_credentials" and form.get("client_id") and form.get("client_secret")
        )
        if not ok:
            return Response(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : refresh_token",
                },
            )
        out = {"access_token": self.token, "token_type": "bearer", "expires_in": 3600}
        if grant == "refresh_token":
            out["refresh_token"] = self.refresh_token
        return Response(200, out)

    # -- FBA inventory --------------------------------------------------------------------------
    def _summaries(self, req: Request) -> Response:
        if (
            req.arg("granularityType") != "Marketplace"
            or not req.arg("granularityId")
            or not req.arg("marketplaceIds")
        ):
            raise BadRequest("granularityType (Marketplace), granularityId and marketplaceIds are required.")
        markets = req.arg("marketplaceIds").split(",")
        if len(markets) != 1:
            raise BadRequest("marketplaceIds must contain exactly one marketplace.")
        if markets[0] != AMAZON_MARKETPLACE or req.arg("granularityId") != AMAZON_MARKETPLACE:
            raise BadRequest(f"Invalid marketplace: {markets[0]}.")
        start_text = req.arg("startDateTime")
        try:
            start = parse_ts(start_text) if start_text else None
        except ValueError:
            raise BadRequest("startDateTime must be ISO 8601.") from None
        skus = None
        if not start:
            skus = (
                (req.arg("sellerSkus") or "").split(",")
                if req.arg("sellerSkus")
                else ([req.arg("sellerSku")] if req.arg("sellerSku") else None)
            )
            if skus and len(skus) > 50:
                raise BadRequest("sellerSkus accepts at most 50 SKUs.")
        fingerprint = hashlib.sha256(json.dumps([start_text, skus, req.arg("details")]).encode()).hexdigest()
        offset = 0
        if req.arg("nextToken"):
            entry = self._tokens.get(req.arg("nextToken"))
            if entry is None or entry[1] != fingerprint:
                raise BadRequest("Invalid nextToken.")
            if time.monotonic() - entry[0] > self.next_token_ttl:
                raise BadRequest("The nextToken has expired. Please restart the request without nextToken.")
            offset = entry[2]
        w = self.world
        rows = [
            s
            for s in sorted(self._fba)
            if (skus is None or s in skus) and (start is None or w.amazon_fba[s]["updated"] >= start)
        ]
        end, has_next = page_bounds(self.plan, w.fault_rng[self.name], offset, PAGE_SIZE, len(rows))
        details = (req.arg("details") or "false").lower() == "true"
        out: dict[str, Any] = {
            "payload": {
                "granularity": {"granularityType": "Marketplace", "granularityId": AMAZON_MARKETPLACE},
                "inventorySummaries": [self._summary(s, details) for s in rows[offset:end]],
            }
        }
        if has_next:
            token = self._new_id()
            self._tokens[token] = (time.monotonic(), fingerprint, end)
            out["pagination"] = {"nextToken": token}
        return Response(200, out, page=True)

    def _summary(self, seller_sku: str, details: bool) -> dict[str, Any]:
        w = self.world
        lst = self._fba[seller_sku]
        rec = w.amazon_fba[seller_sku]
        view = lambda q: int(w.uom_view(self.name, lst.sku, q))  # noqa: E731 - tiny local helper
        fulfillable, inbound, unfulfillable = (
            view(rec["fulfillable"]),
            view(rec["inbound_shipped"]),
            view(rec["unfulfillable"]),
        )
        out = {
            "asin": w.catalog.amazon_asins[lst.sku],
            "fnSku": "X00" + w.catalog.amazon_asins[lst.sku][2:9],
            "sellerSku": seller_sku,
            "condition": "NewItem",
            "lastUpdatedTime": iso(rec["updated"]),
            "productName": w.catalog.sku(lst.sku).description,
            "totalQuantity": fulfillable + inbound + unfulfillable,
            "stores": [],
        }
        if details:
            out["inventoryDetails"] = {
                "fulfillableQuantity": fulfillable,
                "inboundWorkingQuantity": 0,
                "inboundShippedQuantity": inbound,
                "inboundReceivingQuantity": 0,
                "reservedQuantity": {
                    "totalReservedQuantity": 0,
                    "pendingCustomerOrderQuantity": 0,
                    "pendingTransshipmentQuantity": 0,
                    "fcProcessingQuantity": 0,
                },
                "researchingQuantity": {"totalResearchingQuantity": 0, "researchingQuantityBreakdown": []},
                "unfulfillableQuantity": {
                    "totalUnfulfillableQuantity": unfulfillable,
                    "customerDamagedQuantity": 0,
                    "warehouseDamagedQuantity": unfulfillable,
                    "distributorDamagedQuantity": 0,
                    "carrierDamagedQuantity": 0,
                    "defectiveQuantity": 0,
                    "expiredQuantity": 0,
                },
            }
        return out

    # -- listings -------------------------------------------------------------------------------
    def _check_seller(self, req: Request, seller_id: str) -> None:
        if not req.arg("marketplaceIds"):
            raise BadRequest("Missing required parameter marketplaceIds.")
        if seller_id != AMAZON_SELLER_ID:
            raise BadRequest(f"Invalid sellerId: {seller_id}.")

    def _check_listing(self, req: Request, seller_id: str, sku: str) -> str:
        self._check_seller(req, seller_id)
        sku = unquote(sku)
        if sku not in self._mfn:
            raise BadRequest(
                f"SKU '{sku}' not found in marketplace {req.arg('marketplaceIds')}",
                status=404,
                code="NOT_FOUND",
            )
        return sku

    def _get_listing(self, req: Request, seller_id: str, sku: str) -> Response:
        sku = self._check_listing(req, seller_id, sku)
        return Response(200, self._item(sku, (req.arg("includedData") or "summaries").split(",")))

    def _created(self) -> datetime:
        """Every simulated listing was created when the world was seeded (before any update)."""
        return self.world.scenario.anchor - timedelta(days=self.world.scenario.days)

    def _item(self, sku: str, included: list[str]) -> dict[str, Any]:
        """One listings item as getListingsItem and searchListingsItems return it."""
        w = self.world
        lst = self._mfn[sku]
        rec = w.amazon_mfn[sku]
        out: dict[str, Any] = {"sku": sku}
        if "summaries" in included:
            out["summaries"] = [
                {
                    "marketplaceId": AMAZON_MARKETPLACE,
                    "asin": w.catalog.amazon_asins[lst.sku],
                    "productType": "PRODUCT",
                    "conditionType": "new_new",
                    "status": ["BUYABLE"],
                    "itemName": w.catalog.sku(lst.sku).description,
                    "createdDate": iso(self._created()),
                    "lastUpdatedDate": iso(rec["updated"]),
                }
            ]
        if "fulfillmentAvailability" in included:
            out["fulfillmentAvailability"] = [
                {
                    "fulfillmentChannelCode": AMAZON_MFN_CHANNEL,
                    "quantity": int(w.uom_view(self.name, lst.sku, rec["quantity"])),
                }
            ]
        if "issues" in included:
            out["issues"] = []
        return out

    @staticmethod
    def _list_arg(req: Request, name: str, allowed: tuple[str, ...] | None = None) -> list[str] | None:
        text = req.arg(name)
        if text is None:
            return None
        values = [v for v in text.split(",") if v]
        bad = [v for v in values if allowed is not None and v not in allowed]
        if not values or bad:
            raise BadRequest(f"Invalid value for {name}: {text!r}.")
        return values

    @staticmethod
    def _time_arg(req: Request, name: str) -> datetime | None:
        text = req.arg(name)
        if text is None:
            return None
        try:
            return parse_ts(text)
        except ValueError:
            raise BadRequest(f"{name} must be an ISO 8601 date-time, got {text!r}.") from None

    def _search(self, req: Request, seller_id: str) -> Response:
        """searchListingsItems: validate like the SP-API, filter, sort, page with opaque tokens."""
        self._check_seller(req, seller_id)
        markets = req.arg("marketplaceIds").split(",")
        if len(markets) != 1:
            raise BadRequest("marketplaceIds must contain exactly one marketplace.")
        if markets[0] != AMAZON_MARKETPLACE:
            raise BadRequest(f"Invalid marketplace: {markets[0]}.")
        try:
            size = int(req.arg("pageSize") or SEARCH_PAGE_DEFAULT)
        except ValueError:
            raise BadRequest("pageSize must be an integer.") from None
        if not 1 <= size <= SEARCH_PAGE_MAX:
            raise BadRequest(f"pageSize must be between 1 and {SEARCH_PAGE_MAX}.")
        included = self._list_arg(req, "includedData", INCLUDED_DATA) or ["summaries"]
        identifiers = self._list_arg(req, "identifiers")
        id_type = req.arg("identifiersType")
        if identifiers is not None and not id_type:
            raise BadRequest("identifiersType is required when identifiers is provided.")
        if id_type is not None and identifiers is None:
            raise BadRequest("identifiers is required when identifiersType is provided.")
        if id_type is not None and id_type not in IDENTIFIER_TYPES:
            raise BadRequest(f"Invalid value for identifiersType: {id_type!r}.")
        if identifiers is not None and len(identifiers) > 20:
            raise BadRequest("identifiers accepts at most 20 values.")
        family = [n for n in ("identifiers", "variationParentSku", "packageHierarchySku") if req.arg(n)]
        if len(family) > 1:
            raise BadRequest(f"{' and '.join(family)} cannot be used together.")
        bounds = {
            n: self._time_arg(req, n)
            for n in ("createdAfter", "createdBefore", "lastUpdatedAfter", "lastUpdatedBefore")
        }
        with_status = self._list_arg(req, "withStatus", LISTING_STATUSES)
        without_status = self._list_arg(req, "withoutStatus", LISTING_STATUSES)
        severity = self._list_arg(req, "withIssueSeverity", ("WARNING", "ERROR"))
        sort_by = req.arg("sortBy") or "lastUpdatedDate"
        if sort_by not in ("sku", "createdDate", "lastUpdatedDate"):
            raise BadRequest(f"Invalid value for sortBy: {sort_by!r}.")
        order = req.arg("sortOrder") or "DESC"
        if order not in ("ASC", "DESC"):
            raise BadRequest(f"Invalid value for sortOrder: {order!r}.")

        # A token is bound to the query that produced it (every parameter but pageToken).
        query = sorted((k, v) for k, vs in req.query.items() if k != "pageToken" for v in vs)
        fingerprint = hashlib.sha256(
            json.dumps(["searchListingsItems", seller_id, query]).encode()
        ).hexdigest()
        offset = 0
        if req.arg("pageToken"):
            entry = self._tokens.get(req.arg("pageToken"))
            if entry is None or entry[1] != fingerprint:
                raise BadRequest("Invalid pageToken.")
            offset = entry[2]

        w = self.world
        created = self._created()
        status = ["BUYABLE"]  # every simulated offer is buyable, none has issues or relationships

        def matches(sku: str) -> bool:
            updated = w.amazon_mfn[sku]["updated"]
            if identifiers is not None:
                key = {"SKU": sku, "ASIN": w.catalog.amazon_asins[self._mfn[sku].sku]}.get(id_type)
                if key not in identifiers:
                    return False
            return not (
                req.arg("variationParentSku")
                or req.arg("packageHierarchySku")
                or severity
                or (with_status and not set(with_status) & set(status))
                or (without_status and set(without_status) & set(status))
                or (bounds["createdAfter"] and created < bounds["createdAfter"])
                or (bounds["createdBefore"] and created > bounds["createdBefore"])
                or (bounds["lastUpdatedAfter"] and updated < bounds["lastUpdatedAfter"])
                or (bounds["lastUpdatedBefore"] and updated > bounds["lastUpdatedBefore"])
            )

        def sort_key(sku: str) -> tuple:
            if sort_by == "sku":
                return (sku,)
            return (created if sort_by == "createdDate" else w.amazon_mfn[sku]["updated"], sku)

        rows = sorted((s for s in self._mfn if matches(s)), key=sort_key, reverse=order == "DESC")
        reachable = rows[:SEARCH_LIMIT]
        end, has_next = page_bounds(self.plan, w.fault_rng[self.name], offset, size, len(reachable))
        out: dict[str, Any] = {
            "numberOfResults": len(rows),
            "items": [self._item(s, included) for s in reachable[offset:end]],
        }
        pagination = {}
        if has_next:
            pagination["nextToken"] = self._page_token(fingerprint, end)
        if offset > 0:
            pagination["previousToken"] = self._page_token(fingerprint, max(0, offset - size))
        if pagination:
            out["pagination"] = pagination
        return Response(200, out, page=True)

    def _page_token(self, fingerprint: str, offset: int) -> str:
        token = self._new_id()
        self._tokens[token] = (time.monotonic(), fingerprint, offset)
        return token

    def _patch_listing(self, req: Request, seller_id: str, sku: str) -> Response:
        sku = self._check_listing(req, seller_id, sku)
        body = req.json()
        if (
            not isinstance(body, dict)
            or not body.get("productType")
            or not isinstance(body.get("patches"), list)
        ):
            raise BadRequest("Request body must contain productType and patches.")
        quantity = None
        for i, patch in enumerate(body["patches"]):
            if patch.get("op") not in ("add", "replace", "merge", "delete") or not patch.get("path"):
                raise BadRequest(f"patches[{i}] must have a valid op and path.")
            if patch["path"] != "/attributes/fulfillment_availability" or patch["op"] == "delete":
                continue
            for value in patch.get("value") or []:
                if not value.get("fulfillment_channel_code"):
                    raise BadRequest(f"patches[{i}].value: fulfillment_channel_code is required.")
                if value["fulfillment_channel_code"] == AMAZON_MFN_CHANNEL:
                    q = value.get("quantity")
                    if not isinstance(q, int) or q < 0:
                        raise BadRequest(f"patches[{i}].value: quantity must be a non-negative integer.")
                    quantity = q
        submission = self._new_id()
        preview = req.arg("mode") == "VALIDATION_PREVIEW"
        if quantity is not None and not preview:
            self._pending.append((time.monotonic() + self.apply_delay, sku, quantity))
            digest = hashlib.sha256(json.dumps([sku, body], sort_keys=True).encode()).hexdigest()
            self.world.record_request(
                self.name,
                f"sha256:{digest}",
                True,
                {"sku": sku, "quantity": quantity, "submissionId": submission},
            )
        return Response(
            200,
            {
                "sku": sku,
                "status": "VALID" if preview else "ACCEPTED",
                "submissionId": submission,
                "issues": [],
            },
            mutation=not preview,
        )
