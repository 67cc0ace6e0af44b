"""ShipHero Public API (GraphQL) client: warehouse products and inventory changes in, on-hand out.

Owns the ShipHero queries and `inventory_replace`, Relay pagination of the `{request_id, complexity,
data}` wrappers, and the credit bucket (4,004 credits restoring 60/s, charged by each answer's
`complexity`). ShipHero has no idempotency key or compare-and-set: a push compares a fresh read
with the expected level first and is never resent blind (channel-apis.md §5).
ShipHero timestamps carry no zone; its API documents them as UTC, so they are read as UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from .base import (
    ChannelClient,
    Entity,
    LevelTarget,
    MovementCursor,
    PushResult,
    Record,
    as_decimal,
    as_timedelta,
    connection,
    integral,
    next_cursor,
)
from .http import (
    READ,
    UNKEYED_WRITE,
    ApiResponse,
    BadResponse,
    ChannelHttp,
    CostBudget,
    RequestRejected,
    format_timestamp,
    parse_timestamp,
)

PRODUCT_FIELDS = "id legacy_id sku warehouse_id on_hand available allocated backorder reserve_inventory " \
                 "non_sellable_quantity created_at updated_at"
CHANGE_FIELDS = "id legacy_id sku warehouse_id previous_on_hand change_in_on_hand reason cycle_counted " \
                "location_id created_at"

PRODUCTS_QUERY = f"""
query WarehouseProducts($warehouse_id: String, $updated_from: ISODateTime, $sku: String, $first: Int, $after: String) {{
  warehouse_products(warehouse_id: $warehouse_id, updated_from: $updated_from, sku: $sku) {{
    request_id complexity
    data(first: $first, after: $after) {{
      pageInfo {{ hasNextPage endCursor }}
      edges {{ node {{ {PRODUCT_FIELDS} }} }}
    }}
  }}
}}"""

CHANGES_QUERY = f"""
query InventoryChanges($warehouse_id: String, $date_from: ISODateTime, $first: Int, $after: String) {{
  inventory_changes(warehouse_id: $warehouse_id, date_from: $date_from) {{
    request_id complexity
    data(first: $first, after: $after) {{
      pageInfo {{ hasNextPage endCursor }}
      edges {{ node {{ {CHANGE_FIELDS} }} }}
    }}
  }}
}}"""

REPLACE_MUTATION = """
mutation Replace($data: ReplaceInventoryInput!) {
  inventory_replace(data: $data) {
    request_id complexity
    warehouse_product { sku warehouse_id on_hand }
  }
}"""


class ShipHeroClient(ChannelClient):
    """`ShipHeroClient(base_url, token, warehouse_ids=(), page_size=100, lookback=24h)`.

    Token as `Authorization: Bearer` (env SHIPHERO_ACCESS_TOKEN). Level targets are
    `(sku, warehouse_id)`; levels and pushes are `on_hand` (what `inventory_replace` sets). A change's
    `created_at` is the event's time, and a late-reported change lands behind the cursor: the default
    lookback re-reads a day (numbers are seconds, for the registry YAML)."""

    channel: ClassVar[str] = "shiphero"
    entities: ClassVar[tuple[Entity, ...]] = (
        Entity("warehouse_products", "levels", "read_levels"),
        Entity("inventory_changes", "movements", "read_movements"),
    )

    def __init__(self, base_url: str, token: str, *, warehouse_ids: tuple[str, ...] | list[str] = (),
                 page_size: int = 100, lookback: timedelta | float = timedelta(hours=24), credits: float = 4004.0,
                 restore_rate: float = 60.0, **http_options: Any) -> None:
        if not token:
            raise ValueError("shiphero: an access token is required (SHIPHERO_ACCESS_TOKEN)")
        self.http = ChannelHttp(self.channel, base_url, headers={"Authorization": f"Bearer {token}"},
                                secrets=[token], **http_options)
        self.warehouse_ids = list(warehouse_ids)
        self.page_size = page_size
        self.lookback = as_timedelta(lookback)
        # ShipHero does not report the bucket; the client keeps its own account of spent credits.
        self.credits = CostBudget(credits, restore_rate, sleep=self.http.sleep)
        self._last_complexity = 0.0

    def _throttle(self, answer: ApiResponse) -> float | None:
        """Credit exhaustion may come back as a 200 whose error mentions credits."""
        errors = answer.data.get("errors") if isinstance(answer.data, dict) else None
        if errors and any("credit" in str(e.get("message", "")).lower() for e in errors if isinstance(e, dict)):
            return max(self.credits.seconds_until(self._last_complexity or self.credits.maximum / 4), 1.0)
        return None

    def _graphql(self, root: str, query: str, variables: dict[str, Any], *, mode: str = READ) -> dict[str, Any]:
        self.credits.wait_for(self._last_complexity)
        answer = self.http.request("POST", "/graphql", json_body={"query": query, "variables": variables},
                                   mode=mode, throttle=self._throttle, what=f"graphql {root}")
        body = answer.data
        if not isinstance(body, dict):
            raise BadResponse(self.channel, f"graphql {root}: answer is not a JSON object", status=answer.status)
        errors = body.get("errors") or []
        if errors:
            messages = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
            raise RequestRejected(self.channel, f"graphql {root}: {self.http.redact(messages)[:500]}",
                                  status=answer.status, body={"errors": errors})
        result = (body.get("data") or {}).get(root)
        if not isinstance(result, dict):
            raise BadResponse(self.channel, f"graphql {root}: answer has no {root}", status=answer.status)
        complexity = result.get("complexity")
        if isinstance(complexity, (int, Decimal)):
            self._last_complexity = float(complexity)
            self.credits.charge(float(complexity))
        return result

    def _relay(self, root: str, query: str, variables: dict[str, Any]) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        after: str | None = None
        while True:
            result = self._graphql(root, query, {**variables, "first": self.page_size, "after": after})
            conn = connection(self.channel, result.get("data"), root)
            yield from conn["nodes"]
            after = next_cursor(self.channel, conn, seen)
            if after is None:
                return

    def _scopes(self) -> list[str | None]:
        return list(self.warehouse_ids) or [None]

    # ------------------------------------------------------------------ reads

    def read_levels(self, since: datetime | None = None) -> Iterator[Record]:
        """Warehouse products updated since `since` (all when None), per configured warehouse."""
        for warehouse in self._scopes():
            variables = {"warehouse_id": warehouse, "updated_from": format_timestamp(since) if since else None,
                         "sku": None}
            for product in self._relay("warehouse_products", PRODUCTS_QUERY, variables):
                updated = product.get("updated_at")
                sid = f"{product.get('sku')}|{product.get('warehouse_id')}|{updated}"
                yield Record(sid, parse_timestamp(updated, assume_utc=True), product)

    def read_movements(self, cursor: MovementCursor | None) -> Iterator[Record]:
        """Inventory changes created since the cursor minus the lookback (all when None)."""
        date_from = format_timestamp(cursor.read_from(self.lookback)) if cursor else None
        for warehouse in self._scopes():
            for change in self._relay("inventory_changes", CHANGES_QUERY,
                                      {"warehouse_id": warehouse, "date_from": date_from}):
                if not change.get("id"):
                    raise BadResponse(self.channel, "inventory change without id")
                yield Record(str(change["id"]), parse_timestamp(change.get("created_at"), assume_utc=True), change)

    def read_level(self, target: LevelTarget) -> Decimal | None:
        """`on_hand` of the SKU in that warehouse now; None when ShipHero does not stock it there."""
        result = self._graphql("warehouse_products", PRODUCTS_QUERY, {
            "warehouse_id": target.channel_location, "sku": target.channel_sku, "updated_from": None,
            "first": 5, "after": None})
        for product in connection(self.channel, result.get("data"), "warehouse_products")["nodes"]:
            if product.get("sku") == target.channel_sku and product.get("warehouse_id") == target.channel_location:
                return as_decimal(product.get("on_hand"))
        return None

    # ------------------------------------------------------------------ writes

    def set_level(self, target: LevelTarget, from_quantity: Decimal | None, to_quantity: Decimal,
                  idempotency_key: str, *, as_of: datetime | None = None) -> PushResult:
        """`inventory_replace` the on-hand after a read-back shows the expected `from_quantity`.

        The key goes into the reason text for the audit trail; ShipHero does not deduplicate on it,
        so a dropped reply is `unknown`, never resent. `as_of` cannot be sent."""
        to_int = integral(Decimal(to_quantity))
        if to_int is None:
            return PushResult("rejected", None, "shiphero counts whole units; the quantity must be an integer")

        def push() -> PushResult:
            current = self.read_level(target)
            if current == to_int:
                return PushResult("applied", 200, "already at the target quantity", current)
            if current is None or current != (Decimal(from_quantity) if from_quantity is not None else None):
                return PushResult("stale", 200, f"on_hand is {current}, expected {from_quantity}", current)
            result = self._graphql("inventory_replace", REPLACE_MUTATION, {"data": {
                "sku": target.channel_sku, "warehouse_id": target.channel_location, "quantity": to_int,
                "reason": f"inventory-sync correction {idempotency_key}"}}, mode=UNKEYED_WRITE)
            observed = as_decimal((result.get("warehouse_product") or {}).get("on_hand"))
            if observed is not None and observed != to_int:
                return PushResult("unknown", 200, f"replace answered on_hand {observed}", observed)
            return PushResult("applied", 200, "", observed)

        return self._guarded_push(push)
