"""Square Inventory API v2 client: counts and the change history in, physical counts out.

Owns the Square request bodies (body-cursor pagination), the change-feed cursor with its lookback,
and the push as a `PHYSICAL_COUNT` under an `idempotency_key`, guarded by reading the count first
(Square has no compare-and-set; channel-apis.md §2).
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
)
from .http import KEYED_WRITE, BadResponse, ChannelHttp, RequestRejected, format_timestamp, parse_timestamp

COUNTS_PATH = "/v2/inventory/counts/batch-retrieve"
CHANGES_PATH = "/v2/inventory/changes/batch-retrieve"
CREATE_PATH = "/v2/inventory/changes/batch-create"
CHANGE_TYPES = ("PHYSICAL_COUNT", "ADJUSTMENT")  # TRANSFER may not be used as a filter
# Same key, different body: an earlier attempt with this key reached Square.
KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"


class SquareClient(ChannelClient):
    """`SquareClient(base_url, token, location_ids=(), square_version="2025-01-23", lookback=1h)`.

    Token as `Authorization: Bearer` (env SQUARE_ACCESS_TOKEN). Level targets are
    `(catalog_object_id, location_id)`; levels and pushes are the `IN_STOCK` state."""

    channel: ClassVar[str] = "square"
    entities: ClassVar[tuple[Entity, ...]] = (
        Entity("inventory_counts", "levels", "read_levels"),
        Entity("inventory_changes", "movements", "read_movements"),
    )

    def __init__(self, base_url: str, token: str, *, location_ids: tuple[str, ...] | list[str] = (),
                 square_version: str = "2025-01-23", page_limit: int = 1000,
                 lookback: timedelta | float = timedelta(hours=1), states: tuple[str, ...] = ("IN_STOCK",),
                 **http_options: Any) -> None:
        if not token:
            raise ValueError("square: an access token is required (SQUARE_ACCESS_TOKEN)")
        self.http = ChannelHttp(self.channel, base_url, secrets=[token], headers={
            "Authorization": f"Bearer {token}", "Square-Version": square_version}, **http_options)
        self.location_ids = list(location_ids)
        self.page_limit = page_limit
        self.lookback = as_timedelta(lookback)
        self.states = list(states)

    def _pages(self, path: str, body: dict[str, Any], key: str, what: str) -> Iterator[dict[str, Any]]:
        """Every object under `key` across all pages; the cursor travels in the body."""
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            answer = self.http.request("POST", path, json_body={**body, **({"cursor": cursor} if cursor else {})},
                                       what=what)
            data = answer.data if isinstance(answer.data, dict) else None
            items = (data or {}).get(key, [])
            if data is None or not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise BadResponse(self.channel, f"{what}: answer has no list of {key}", status=answer.status)
            yield from items
            cursor = data.get("cursor")
            if not cursor:
                return
            if cursor in seen:
                raise BadResponse(self.channel, f"{what}: pagination cursor repeats")
            seen.add(cursor)

    # ------------------------------------------------------------------ reads

    def read_levels(self, since: datetime | None = None) -> Iterator[Record]:
        """Counts calculated after `since` (all when None), in the configured states."""
        body: dict[str, Any] = {"states": self.states, "limit": self.page_limit}
        if self.location_ids:
            body["location_ids"] = self.location_ids
        if since is not None:
            body["updated_after"] = format_timestamp(since)
        for count in self._pages(COUNTS_PATH, body, "counts", "counts/batch-retrieve"):
            sid = "|".join(str(count.get(k)) for k in ("catalog_object_id", "location_id", "state", "calculated_at"))
            yield Record(sid, parse_timestamp(count.get("calculated_at")), count)

    def read_movements(self, cursor: MovementCursor | None) -> Iterator[Record]:
        """Physical counts and adjustments created since the cursor minus the lookback.

        Square filters on `created_at` while `occurred_at` may be back-dated, so the cursor follows
        `created_at`; the lookback re-reads anything created late within the window."""
        body: dict[str, Any] = {"types": list(CHANGE_TYPES), "limit": self.page_limit}
        if self.location_ids:
            body["location_ids"] = self.location_ids
        if cursor is not None:
            body["updated_after"] = format_timestamp(cursor.read_from(self.lookback))
        for change in self._pages(CHANGES_PATH, body, "changes", "changes/batch-retrieve"):
            detail = change.get(str(change.get("type", "")).lower())
            if not isinstance(detail, dict) or not detail.get("id"):
                raise BadResponse(self.channel, "inventory change without its typed object or id")
            yield Record(str(detail["id"]), parse_timestamp(detail.get("created_at")), change)

    def read_level(self, target: LevelTarget) -> Decimal | None:
        """The IN_STOCK count now; None when Square has no count for it."""
        body = {"catalog_object_ids": [target.channel_sku], "location_ids": [target.channel_location],
                "states": ["IN_STOCK"]}
        for count in self._pages(COUNTS_PATH, body, "counts", "counts/batch-retrieve"):
            if count.get("state") == "IN_STOCK" and count.get("location_id") == target.channel_location:
                return as_decimal(count.get("quantity"))
        return None

    # ------------------------------------------------------------------ writes

    def set_level(self, target: LevelTarget, from_quantity: Decimal | None, to_quantity: Decimal,
                  idempotency_key: str, *, as_of: datetime | None = None) -> PushResult:
        """Record a PHYSICAL_COUNT of `to_quantity` if the count still is `from_quantity`.

        Already at `to_quantity` (our earlier attempt landed, or someone else got there) the count is
        sent anyway: the same key replays Square's first answer and an unchanged count is ignored.
        `as_of` dates the count (the correction's planning time, so a resend is byte-identical;
        Square refuses dates older than 24 h); default now."""
        occurred = format_timestamp(as_of or datetime.now().astimezone())

        def push() -> PushResult:
            current = self.read_level(target)
            current_or_zero = current if current is not None else Decimal(0)
            # Square shows a variation it never counted as no count at all, i.e. 0.
            expected = Decimal(from_quantity) if from_quantity is not None else Decimal(0)
            if current_or_zero not in (expected, Decimal(to_quantity)):
                return PushResult("stale", 200, f"count is {current_or_zero}, expected {from_quantity}",
                                  current_or_zero)
            change = {"type": "PHYSICAL_COUNT", "physical_count": {
                "reference_id": idempotency_key[:255], "catalog_object_id": target.channel_sku,
                "state": "IN_STOCK", "location_id": target.channel_location,
                "quantity": _decimal_string(Decimal(to_quantity)), "occurred_at": occurred}}
            try:
                answer = self.http.request("POST", CREATE_PATH, mode=KEYED_WRITE, what="changes/batch-create",
                                           json_body={"idempotency_key": idempotency_key, "changes": [change],
                                                      "ignore_unchanged_counts": True})
            except RequestRejected as exc:
                codes = {e.get("code") for e in (exc.body or {}).get("errors") or [] if isinstance(e, dict)}
                if KEY_REUSED not in codes:
                    raise
                # An earlier attempt with this key reached Square (with another `as_of`): the count
                # read just before tells whether it landed.
                landed = current_or_zero == Decimal(to_quantity)
                return PushResult("applied" if landed else "unknown", exc.status, str(exc), current_or_zero)
            return self._outcome(answer.status, answer.data, target)

        return self._guarded_push(push)

    def _outcome(self, status: int, body: Any, target: LevelTarget) -> PushResult:
        errors = (body or {}).get("errors") or [] if isinstance(body, dict) else []
        if errors:
            detail = self.http.redact("; ".join(f"{e.get('code')}: {e.get('detail')}" for e in errors))
            return PushResult("rejected", status, detail)
        counts = body.get("counts") or [] if isinstance(body, dict) else []
        observed = next((as_decimal(c.get("quantity")) for c in counts
                         if c.get("catalog_object_id") == target.channel_sku
                         and c.get("location_id") == target.channel_location and c.get("state") == "IN_STOCK"), None)
        return PushResult("applied", status, "", observed)


def _decimal_string(quantity: Decimal) -> str:
    """Square quantities are decimal strings (≤ 5 fractional digits), never exponent notation."""
    text = format(quantity.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")
