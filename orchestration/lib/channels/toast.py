"""Toast Stock API client: menu-item stock per restaurant location in, QUANTITY/OUT_OF_STOCK out.

Owns the three stock endpoints and their quirks (pos-apis.md §1): `GET /stock/v1/inventory` never
returns `IN_STOCK` items, so the listed items it left out are looked up with `/inventory/search`;
`IN_STOCK` carries no number (an untracked, unlimited level); the location is chosen per request by
the `Toast-Restaurant-External-ID` header. Toast records no change time and no history, so every
read is a snapshot stamped with the time Toast answered, and this client produces levels only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from .base import ChannelClient, Entity, LevelTarget, PushResult, Record, as_decimal
from .http import READ, UNKEYED_WRITE, ApiResponse, BadResponse, ChannelHttp

INVENTORY_PATH = "/stock/v1/inventory"
SEARCH_PATH = "/stock/v1/inventory/search"
UPDATE_PATH = "/stock/v1/inventory/update"
RESTAURANT_HEADER = "Toast-Restaurant-External-ID"
SEARCH_BATCH = 100


class ToastClient(ChannelClient):
    """`ToastClient(base_url, token, restaurants={restaurant_guid: [item guids listed there]})`.

    Token as `Authorization: Bearer` (env TOAST_ACCESS_TOKEN). Level targets are
    `(item guid, restaurant guid)`. A level is `None` when the item is `IN_STOCK` (untracked)."""

    channel: ClassVar[str] = "toast"
    entities: ClassVar[tuple[Entity, ...]] = (Entity("stock_items", "levels", "read_levels"),)

    def __init__(self, base_url: str, token: str, *, restaurants: Mapping[str, Sequence[str]],
                 **http_options: Any) -> None:
        if not token:
            raise ValueError("toast: an access token is required (TOAST_ACCESS_TOKEN)")
        if not restaurants:
            raise ValueError("toast: at least one restaurant location GUID is required")
        self.http = ChannelHttp(self.channel, base_url, headers={"Authorization": f"Bearer {token}"},
                                secrets=[token], **http_options)
        self.restaurants = {guid: list(items) for guid, items in restaurants.items()}

    def _items(self, restaurant: str, method: str, path: str, *, body: Any = None, mode: str = READ,
               what: str) -> tuple[list[dict[str, Any]], ApiResponse]:
        answer = self.http.request(method, path, json_body=body, headers={RESTAURANT_HEADER: restaurant},
                                   mode=mode, what=what)
        if not isinstance(answer.data, list) or not all(isinstance(i, dict) for i in answer.data):
            raise BadResponse(self.channel, f"{what}: answer is not an array of items", status=answer.status)
        return answer.data, answer

    def _observed_at(self, answer: ApiResponse) -> datetime:
        """Toast's own clock (the `Date` header) when present, so snapshots line up with the channel."""
        try:
            return parsedate_to_datetime(answer.headers["date"]).astimezone(UTC)
        except (KeyError, TypeError, ValueError):
            return datetime.now(UTC)

    def _search(self, restaurant: str, guids: Sequence[str]) -> Iterator[tuple[dict[str, Any], datetime]]:
        for start in range(0, len(guids), SEARCH_BATCH):
            items, answer = self._items(restaurant, "POST", SEARCH_PATH, what="inventory/search",
                                        body={"guids": list(guids[start:start + SEARCH_BATCH])})
            observed = self._observed_at(answer)
            for item in items:
                yield item, observed

    # ------------------------------------------------------------------ reads

    def read_levels(self, since: datetime | None = None) -> Iterator[Record]:
        """Every tracked item of every restaurant plus the listed items that are IN_STOCK.

        `since` is not used: Toast has no change filter and no change time."""
        for restaurant, listed in self.restaurants.items():
            items, answer = self._items(restaurant, "GET", INVENTORY_PATH, what="inventory")
            observed = self._observed_at(answer)
            returned = {i.get("guid") for i in items}
            for item in items:
                yield self._record(restaurant, item, observed)
            missing = [g for g in listed if g not in returned]
            for item, at in self._search(restaurant, missing):
                yield self._record(restaurant, item, at)

    def _record(self, restaurant: str, item: dict[str, Any], observed: datetime) -> Record:
        guid = item.get("guid")
        if not guid:
            raise BadResponse(self.channel, "stock item without guid")
        return Record(f"{guid}|{restaurant}|{observed.isoformat()}", observed,
                      {**item, "restaurantGuid": restaurant, "observedAt": observed.isoformat()})

    def read_level(self, target: LevelTarget) -> Decimal | None:
        """QUANTITY → its quantity, OUT_OF_STOCK → 0, IN_STOCK or unknown item → None."""
        item = self._find(target)
        return _level(item) if item else None

    def _find(self, target: LevelTarget) -> dict[str, Any] | None:
        return next((item for item, _ in self._search(target.channel_location, [target.channel_sku])
                     if item.get("guid") == target.channel_sku and item.get("itemGuidValidity") != "INVALID"), None)

    # ------------------------------------------------------------------ writes

    def set_level(self, target: LevelTarget, from_quantity: Decimal | None, to_quantity: Decimal,
                  idempotency_key: str, *, as_of: datetime | None = None) -> PushResult:
        """Set QUANTITY (> 0) or OUT_OF_STOCK (0) after a read-back shows `from_quantity`.

        `from_quantity=None` expects an untracked IN_STOCK item. Toast has no key and no guard, so a
        dropped reply is `unknown`, never resent. `idempotency_key` and `as_of` cannot be sent."""
        to_q = Decimal(to_quantity)
        if to_q < 0:
            return PushResult("rejected", None, "toast cannot hold a negative quantity")

        def push() -> PushResult:
            item = self._find(target)
            if item is None:
                return PushResult("rejected", 200, "item unknown at this restaurant")
            current = _level(item)
            if current == to_q:
                return PushResult("applied", 200, "already at the target quantity", current)
            expected = None if from_quantity is None else Decimal(from_quantity)
            if current != expected:
                return PushResult("stale", 200, f"level is {item.get('status')} {current}, expected {expected}",
                                  current)
            # Toast's quantity is a double on the wire; whole and typical fractional counts are exact.
            update = {"guid": target.channel_sku, "status": "QUANTITY", "quantity": float(to_q)} if to_q > 0 \
                else {"guid": target.channel_sku, "status": "OUT_OF_STOCK"}
            items, answer = self._items(target.channel_location, "PUT", UPDATE_PATH, body=[update],
                                        mode=UNKEYED_WRITE, what="inventory/update")
            echoed = next((i for i in items if i.get("guid") == target.channel_sku), None)
            observed = _level(echoed) if echoed else None
            if observed != to_q:
                return PushResult("unknown", answer.status, f"update answered {observed}", observed)
            return PushResult("applied", answer.status, "", observed)

        return self._guarded_push(push)


def _level(item: dict[str, Any]) -> Decimal | None:
    status = item.get("status")
    if status == "QUANTITY":
        return as_decimal(item.get("quantity"))
    if status == "OUT_OF_STOCK":
        return Decimal(0)
    return None
