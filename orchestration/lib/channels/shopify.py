"""Shopify Admin GraphQL (API 2026-01) client: inventory levels in, `available` corrections out.

Owns the Shopify queries and mutation, Shopify's cost-based throttling (`extensions.cost`), and the
mapping of `inventorySetQuantities` answers to push outcomes. Shopify has no public movement history,
so this client produces levels only (channel-apis.md §1.4).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from .base import (
    ChannelClient,
    Entity,
    LevelTarget,
    PushResult,
    Record,
    as_decimal,
    as_timedelta,
    connection,
    integral,
    next_cursor,
)
from .http import (
    KEYED_WRITE,
    READ,
    ApiResponse,
    BadResponse,
    ChannelHttp,
    CostBudget,
    RequestRejected,
    format_timestamp,
    parse_timestamp,
)

# The quantity names staging reads (stg_shopify__inventory_levels): every name asked for is an object
# Shopify charges for, so a full read of the levels costs about half of asking for all eight.
QUANTITY_NAMES = ("available", "on_hand", "committed", "damaged")

_LEVEL_FIELDS = """
        pageInfo { hasNextPage endCursor }
        nodes {
          id updatedAt
          location { id }
          quantities(names: $names) { name quantity updatedAt }
        }"""

LEVELS_QUERY = f"""
query InventoryLevels($first: Int!, $after: String, $levels: Int!, $names: [String!]!) {{
  inventoryItems(first: $first, after: $after) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{
      id sku tracked
      inventoryLevels(first: $levels) {{{_LEVEL_FIELDS}
      }}
    }}
  }}
}}"""

# An item stocked at more locations than fit in the first nested page: read the rest of its levels.
MORE_LEVELS_QUERY = f"""
query MoreInventoryLevels($id: ID!, $after: String, $levels: Int!, $names: [String!]!) {{
  inventoryItem(id: $id) {{
    id sku tracked
    inventoryLevels(first: $levels, after: $after) {{{_LEVEL_FIELDS}
    }}
  }}
}}"""

LOCATIONS_QUERY = """
query Locations($first: Int!, $after: String) {
  locations(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id }
  }
}"""

_CHANGED_LEVEL_FIELDS = _LEVEL_FIELDS.replace("id updatedAt", "id updatedAt item { id sku tracked }")

# What changed at one location: a level's updatedAt moves with its quantities (an item's does not).
CHANGED_LEVELS_QUERY = f"""
query ChangedInventoryLevels($location: ID!, $first: Int!, $after: String, $query: String!, $names: [String!]!) {{
  location(id: $location) {{
    inventoryLevels(first: $first, after: $after, query: $query) {{{_CHANGED_LEVEL_FIELDS}
    }}
  }}
}}"""

LEVEL_QUERY = """
query InventoryLevel($id: ID!, $locationId: ID!) {
  inventoryItem(id: $id) {
    inventoryLevel(locationId: $locationId) { quantities(names: ["available"]) { name quantity } }
  }
}"""

# The key is written into the document because Shopify takes it as a directive argument; it is
# restricted to a safe alphabet (`_check_key`) so it can never break out of the string literal.
SET_MUTATION = """
mutation SetAvailable($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) @idempotent(key: "%s") {
    inventoryAdjustmentGroup { id createdAt changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"""

_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,255}$")
STALE_CODES = {"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"}
IN_FLIGHT_CODES = {"IDEMPOTENCY_CONCURRENT_REQUEST"}


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError("idempotency key must be 1-255 characters of A-Z a-z 0-9 . _ : -")
    return key


def _errors(body: Any) -> list[dict[str, Any]]:
    errors = body.get("errors") if isinstance(body, dict) else None
    return errors if isinstance(errors, list) else []


class ShopifyClient(ChannelClient):
    """`ShopifyClient(base_url, token, api_version="2026-01", page_size=25, levels_per_item=5,
    changed_page_size=100, lookback=5 min)`.

    `base_url` is the shop root (`https://{shop}.myshopify.com`); the token goes in
    `X-Shopify-Access-Token` (env SHOPIFY_ACCESS_TOKEN). Level targets are
    `(inventory item gid, location gid)`; pushes set the `available` quantity. The page sizes keep a
    levels query near 600 cost points (Shopify refuses single queries above 1000)."""

    channel: ClassVar[str] = "shopify"
    entities: ClassVar[tuple[Entity, ...]] = (Entity("inventory_levels", "levels", "read_levels"),)

    def __init__(self, base_url: str, token: str, *, api_version: str = "2026-01", page_size: int = 25,
                 levels_per_item: int = 5, changed_page_size: int = 100,
                 lookback: timedelta | float = timedelta(minutes=5), bucket_size: float = 1000.0,
                 restore_rate: float = 100.0, **http_options: Any) -> None:
        if not token:
            raise ValueError("shopify: an access token is required (SHOPIFY_ACCESS_TOKEN)")
        self.http = ChannelHttp(self.channel, base_url, headers={"X-Shopify-Access-Token": token},
                                secrets=[token], **http_options)
        self.path = f"/admin/api/{api_version}/graphql.json"
        self.page_size = page_size
        self.levels_per_item = levels_per_item
        self.changed_page_size = changed_page_size
        self.lookback = as_timedelta(lookback)
        # Shopify reports the bucket on every answer; these are only the starting assumptions.
        self.budget = CostBudget(bucket_size, restore_rate, sleep=self.http.sleep)
        self._last_cost: dict[str, float] = {}

    # ------------------------------------------------------------------ transport

    def _throttle(self, answer: ApiResponse) -> float | None:
        """Shopify reports throttling inside a 200: wait until the bucket holds the requested cost."""
        body = answer.data
        self._observe(body)
        if not any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in _errors(body)):
            return None
        cost = (body.get("extensions") or {}).get("cost") or {}
        requested = float(cost.get("requestedQueryCost") or self.budget.maximum / 10)
        hinted = self.http.retry_after(answer.headers.get("retry-after")) or 0.0
        return max(self.budget.seconds_until(requested), hinted, 1.0 / max(self.budget.restore_rate, 1e-9))

    def _observe(self, body: Any) -> None:
        cost = (body.get("extensions") or {}).get("cost") if isinstance(body, dict) else None
        status = (cost or {}).get("throttleStatus")
        if status and status.get("currentlyAvailable") is not None:
            self.budget.observe(status["currentlyAvailable"], status.get("maximumAvailable"),
                                status.get("restoreRate"))

    def _graphql(self, name: str, query: str, variables: dict[str, Any], *, mode: str = READ) -> dict[str, Any]:
        self.budget.wait_for(self._last_cost.get(name, 0.0))
        answer = self.http.request("POST", self.path, json_body={"query": query, "variables": variables,
                                                                 "operationName": name},
                                   mode=mode, throttle=self._throttle, what=f"graphql {name}")
        body = answer.data
        if not isinstance(body, dict):
            raise BadResponse(self.channel, f"graphql {name}: answer is not a JSON object", status=answer.status)
        cost = (body.get("extensions") or {}).get("cost") or {}
        if cost.get("requestedQueryCost") is not None:
            self._last_cost[name] = float(cost["requestedQueryCost"])
        if _errors(body):
            messages = "; ".join(str(e.get("message")) for e in _errors(body))
            raise RequestRejected(self.channel, f"graphql {name}: {self.http.redact(messages)[:500]}",
                                  status=answer.status)
        data = body.get("data")
        if not isinstance(data, dict):
            raise BadResponse(self.channel, f"graphql {name}: answer has no data", status=answer.status)
        return data

    # ------------------------------------------------------------------ reads

    def read_levels(self, since: datetime | None = None) -> Iterator[Record]:
        """Inventory levels: all of them on the first read (`since` None), afterwards only the levels
        updated since `since` minus the lookback, location by location.

        A level's `updatedAt` moves with every quantity change, so `Location.inventoryLevels(query:
        "updated_at:>=…")` finds every changed level (filtering items on their own `updated_at` would
        not: a quantity change leaves the item as it was). The lookback re-reads a margin for writes
        that become visible late; a level read twice keeps its source id and loads once."""
        if since is None:
            for item in self._nodes("InventoryLevels", LEVELS_QUERY, "inventoryItems", {
                    "first": self.page_size, "levels": self.levels_per_item, "names": list(QUANTITY_NAMES)}):
                yield from self._item_levels(item)
            return
        query = f"updated_at:>='{format_timestamp(since - self.lookback)}'"
        for location in self._nodes("Locations", LOCATIONS_QUERY, "locations", {"first": 250}):
            for node in self._nodes("ChangedInventoryLevels", CHANGED_LEVELS_QUERY, "location.inventoryLevels", {
                    "location": location["id"], "first": self.changed_page_size, "query": query,
                    "names": list(QUANTITY_NAMES)}):
                # Landed in the shape of a full read's level (same source id, same payload).
                item = node.get("item") or {}
                yield self._level_record({"id": item.get("id"), "sku": item.get("sku"), "tracked": item.get("tracked")},
                                         {k: v for k, v in node.items() if k != "item"})

    def _nodes(self, name: str, query: str, path: str, variables: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every node of the connection at `path` (dotted) in the answers, page after page. An object on
        the path that is null (a location deactivated meanwhile) has nothing to read."""
        after: str | None = None
        seen: set[str] = set()
        while True:
            found: Any = self._graphql(name, query, {**variables, "after": after})
            *objects, last = path.split(".")
            for key in objects:
                found = found.get(key)
                if found is None:
                    return
            conn = connection(self.channel, found.get(last), last)
            yield from conn["nodes"]
            after = next_cursor(self.channel, conn, seen)
            if after is None:
                return

    def _item_levels(self, item: dict[str, Any]) -> Iterator[Record]:
        context = {"id": item.get("id"), "sku": item.get("sku"), "tracked": item.get("tracked")}
        levels = connection(self.channel, item.get("inventoryLevels"), "inventoryLevels")
        seen: set[str] = set()
        while True:
            for level in levels["nodes"]:
                yield self._level_record(context, level)
            after = next_cursor(self.channel, levels, seen)
            if after is None:
                return
            data = self._graphql("MoreInventoryLevels", MORE_LEVELS_QUERY, {
                "id": context["id"], "after": after, "levels": self.levels_per_item,
                "names": list(QUANTITY_NAMES)})
            levels = connection(self.channel, (data.get("inventoryItem") or {}).get("inventoryLevels"),
                                 "inventoryLevels")

    def _level_record(self, item: dict[str, Any], level: dict[str, Any]) -> Record:
        location = (level.get("location") or {}).get("id")
        if not item["id"] or not location:
            raise BadResponse(self.channel, "inventory level without item or location id")
        stamps = [q.get("updatedAt") for q in level.get("quantities") or [] if q.get("updatedAt")]
        updated = level.get("updatedAt") or (max(stamps) if stamps else None)
        return Record(f"{item['id']}|{location}|{updated}", parse_timestamp(updated),
                      {**level, "inventoryItem": item})

    def read_level(self, target: LevelTarget) -> Decimal | None:
        """The `available` quantity now, or None if the item is not stocked at that location."""
        data = self._graphql("InventoryLevel", LEVEL_QUERY,
                             {"id": target.channel_sku, "locationId": target.channel_location})
        level = (data.get("inventoryItem") or {}).get("inventoryLevel")
        if not level:
            return None
        return next((as_decimal(q.get("quantity")) for q in level.get("quantities") or []
                     if q.get("name") == "available"), None)

    # ------------------------------------------------------------------ writes

    def set_level(self, target: LevelTarget, from_quantity: Decimal | None, to_quantity: Decimal,
                  idempotency_key: str, *, as_of: datetime | None = None) -> PushResult:
        """Set `available` with compare-and-set (`changeFromQuantity`) under `@idempotent(key:)`.

        A replay with the same key returns Shopify's original answer, so resending after an unknown
        outcome is safe. `as_of` is not sent: Shopify stamps the adjustment itself."""
        if from_quantity is None:
            # A null changeFromQuantity tells Shopify to skip the check: a blind write is never sent.
            return PushResult("rejected", None, "shopify needs the expected quantity for changeFromQuantity")
        to_int, from_int = integral(Decimal(to_quantity)), integral(Decimal(from_quantity))
        if to_int is None or from_int is None:
            return PushResult("rejected", None, "shopify counts whole units; the quantities must be integers")
        mutation = SET_MUTATION % _check_key(idempotency_key)
        variables = {"input": {
            "name": "available", "reason": "correction",
            "referenceDocumentUri": f"gid://inventory-sync/Correction/{idempotency_key}",
            "quantities": [{"inventoryItemId": target.channel_sku, "locationId": target.channel_location,
                            "quantity": to_int, "changeFromQuantity": from_int}],
        }}

        def push() -> PushResult:
            data = self._graphql("SetAvailable", mutation, variables, mode=KEYED_WRITE)
            return self._outcome(data.get("inventorySetQuantities") or {}, to_int)

        return self._guarded_push(push)

    def _outcome(self, payload: dict[str, Any], to_quantity: int) -> PushResult:
        errors = payload.get("userErrors") or []
        codes = {e.get("code") for e in errors}
        detail = self.http.redact("; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors))
        if codes & STALE_CODES:
            return PushResult("stale", 200, detail)
        if codes & IN_FLIGHT_CODES:
            return PushResult("unknown", 200, detail)
        if errors:
            return PushResult("rejected", 200, detail)
        group = payload.get("inventoryAdjustmentGroup")
        after = [c.get("quantityAfterChange") for c in (group or {}).get("changes") or []
                 if c.get("name") == "available" and c.get("quantityAfterChange") is not None]
        # No group and no error means nothing changed: the level already was the target.
        observed = as_decimal(after[0]) if after else Decimal(to_quantity)
        return PushResult("applied", 200, "", observed)

