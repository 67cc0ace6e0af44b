"""ShipHero Public API (GraphQL) client: warehouse products and inventory changes in, on-hand out.

Owns the ShipHero queries and `inventory_replace`, Relay pagination of the `{request_id, complexity,
data}` wrappers, and the credit bucket (4,004 credits restoring 60/s, charged by each answer's
`complexity`). ShipHero has no idempotency key or compare-and-set: a push compares a fresh read
with the expected level first and is never resent blind (channel-apis.md §5).
ShipHero timestamps carry no zone; its API documents them as UTC, so they are read as UTC.

The first level read (no cursor) takes ShipHero's inventory snapshot instead of paging
`warehouse_products` (which costs a credit per record): `inventory_generate_snapshot` per warehouse,
`inventory_snapshot(snapshot_id)` polled until `success`, then the JSON file at the pre-signed
`snapshot_url` (fetched without the bearer token). Sources: developer.shiphero.com "Inventory Snapshot"
and the schema pages `inventory-generate-snapshot-input`, `inventory-snapshot(s)`; the file layout
from ShipHero's community posts t/2358, t/3114 and its changelog (old format deprecated 2025-04-01).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .base import (
    Backlog,
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
    AuthError,
    BadResponse,
    ChannelError,
    ChannelHttp,
    CostBudget,
    RateLimited,
    RequestRejected,
    format_timestamp,
    parse_timestamp,
)

logger = logging.getLogger(__name__)

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

SNAPSHOT_FIELDS = "snapshot_id warehouse_id status error created_at enqueued_at updated_at snapshot_url " \
                  "snapshot_expiration new_format"

GENERATE_SNAPSHOT_MUTATION = f"""
mutation GenerateSnapshot($data: InventoryGenerateSnapshotInput!) {{
  inventory_generate_snapshot(data: $data) {{
    request_id complexity
    snapshot {{ {SNAPSHOT_FIELDS} }}
  }}
}}"""

SNAPSHOT_QUERY = f"""
query Snapshot($snapshot_id: String!) {{
  inventory_snapshot(snapshot_id: $snapshot_id) {{
    request_id complexity
    snapshot {{ {SNAPSHOT_FIELDS} }}
  }}
}}"""

ABORT_SNAPSHOT_MUTATION = """
mutation AbortSnapshot($data: InventoryAbortSnapshotInput!) {
  inventory_abort_snapshot(data: $data) { request_id complexity snapshot { snapshot_id status } }
}"""

# Documented job statuses (the `status` argument of inventory_snapshots): pending, enqueued,
# processing, success, error, aborted. The mutation has been seen answering the enum's repr
# ("InventorySnapshotStatus.enqueued", community t/3637), so the prefix is dropped before comparing.
SNAPSHOT_RUNNING = frozenset({"pending", "enqueued", "processing"})
SNAPSHOT_FAILED = frozenset({"error", "aborted"})

REPLACE_MUTATION = """
mutation Replace($data: ReplaceInventoryInput!) {
  inventory_replace(data: $data) {
    request_id complexity
    warehouse_product { sku warehouse_id on_hand }
  }
}"""


class SnapshotError(ChannelError):
    """The inventory snapshot cannot be used: the job failed, was aborted or timed out, or its file is
    expired, missing or not the JSON ShipHero documents. `read_levels` then pages instead."""


def _snapshot_status(value: Any) -> str:
    return str(value or "").rsplit(".", 1)[-1].strip().lower()


class _CreditWaitSpent(Exception):
    """A read's max_credit_wait would be exceeded by its next page."""


def _feed_order(record: Record) -> tuple:
    return (record.cursor_at is not None, record.cursor_at or datetime.min, record.source_id)


class ShipHeroClient(ChannelClient):
    """`ShipHeroClient(base_url, token, warehouse_ids=(), page_size=100, lookback=24h,
    snapshot_levels=True, snapshot_timeout=600, snapshot_poll=1, max_credit_wait=10)`.

    Token as `Authorization: Bearer` (env SHIPHERO_ACCESS_TOKEN). Level targets are
    `(sku, warehouse_id)`; levels and pushes are `on_hand` (what `inventory_replace` sets). A change's
    `created_at` is the event's time, and a late-reported change lands behind the cursor: the default
    lookback re-reads a day (numbers are seconds, for the registry YAML).

    `max_credit_wait` (seconds, default 10): how long one read of the change feed may wait for credits.
    When the next page would need more, the read stops with what it has (in feed order) and leaves the
    rest, e.g. a first read of months of history, to the next reads as the bucket refills; meanwhile the
    drift mart holds back what the incomplete ledger would publish for the warehouses.

    `snapshot_levels` (registry option, default on): the first level read takes the inventory
    snapshot, waiting at most `snapshot_timeout` seconds for the jobs (polled every `snapshot_poll`
    seconds, backing off to 15 s); a failed, aborted or late job falls back to paging, with a warning."""

    channel: ClassVar[str] = "shiphero"
    entities: ClassVar[tuple[Entity, ...]] = (
        Entity("warehouse_products", "levels", "read_levels"),
        Entity("inventory_changes", "movements", "read_movements"),
    )

    def __init__(self, base_url: str, token: str, *, warehouse_ids: tuple[str, ...] | list[str] = (),
                 page_size: int = 100, lookback: timedelta | float = timedelta(hours=24), credits: float = 4004.0,
                 restore_rate: float = 60.0, snapshot_levels: bool = True, snapshot_timeout: float = 600.0,
                 snapshot_poll: float = 1.0, max_credit_wait: float = 10.0, **http_options: Any) -> None:
        if not token:
            raise ValueError("shiphero: an access token is required (SHIPHERO_ACCESS_TOKEN)")
        self.http = ChannelHttp(self.channel, base_url, headers={"Authorization": f"Bearer {token}"},
                                secrets=[token], **http_options)
        self._token = token
        self._http_options = http_options  # for the snapshot download, a separate session without the token
        self.warehouse_ids = list(warehouse_ids)
        self.page_size = page_size
        self.lookback = as_timedelta(lookback)
        self.snapshot_levels = bool(snapshot_levels)
        self.snapshot_timeout = float(snapshot_timeout)
        self.snapshot_poll = float(snapshot_poll)
        self.max_credit_wait = float(max_credit_wait)
        # ShipHero does not report the bucket; the client keeps its own account of spent credits.
        self.credits = CostBudget(credits, restore_rate, sleep=self.http.sleep)
        self._last_complexity = 0.0

    def _throttle(self, answer: ApiResponse) -> float | None:
        """Credit exhaustion may come back as a 200 whose error mentions credits."""
        errors = answer.data.get("errors") if isinstance(answer.data, dict) else None
        if errors and any("credit" in str(e.get("message", "")).lower() for e in errors if isinstance(e, dict)):
            return max(self.credits.seconds_until(self._last_complexity or self.credits.maximum / 4), 1.0)
        return None

    def _graphql(self, root: str, query: str, variables: dict[str, Any], *, mode: str = READ,
                 wait_budget: list[float] | None = None) -> dict[str, Any]:
        self.credits.wait_for(self._last_complexity)
        answer = self.http.request("POST", "/graphql", json_body={"query": query, "variables": variables},
                                   mode=mode, throttle=self._throttle, what=f"graphql {root}",
                                   throttle_budget=wait_budget)
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

    def _relay(self, root: str, query: str, variables: dict[str, Any],
               wait_budget: list[float] | None = None) -> Iterator[dict[str, Any]]:
        """Every node of a Relay connection, page by page. With `wait_budget` ([seconds], shared by the
        reads of one call), a page after the first that would wait for credits longer than what is left
        (by the client's own account, or because ShipHero throttles it: the account may have spent credits
        the client does not know of) raises _CreditWaitSpent instead."""
        seen: set[str] = set()
        after: str | None = None
        while True:
            budget = wait_budget if after is not None else None  # the first page is always read
            if budget is not None:
                wait = self.credits.seconds_until(self._last_complexity)
                if wait > budget[0]:
                    raise _CreditWaitSpent(f"the next page needs {wait:.1f}s of credits; "
                                           f"{budget[0]:.1f}s of max_credit_wait left")
                budget[0] -= wait
            try:
                result = self._graphql(root, query, {**variables, "first": self.page_size, "after": after},
                                       wait_budget=budget)
            except RateLimited as exc:
                if budget is None:
                    raise
                self.credits.observe(0)  # ShipHero says the bucket is empty, whatever the client counted
                raise _CreditWaitSpent(str(exc)) from None
            conn = connection(self.channel, result.get("data"), root)
            yield from conn["nodes"]
            after = next_cursor(self.channel, conn, seen)
            if after is None:
                return

    def _scopes(self) -> list[str | None]:
        return list(self.warehouse_ids) or [None]

    # ------------------------------------------------------------------ reads

    def read_levels(self, since: datetime | None = None) -> Iterator[Record]:
        """Warehouse products updated since `since`, per configured warehouse; with no `since`, every
        level from the inventory snapshot (or all pages when the snapshot is off or fails)."""
        if since is None and self.snapshot_levels:
            try:
                records = self.read_snapshot_levels()
            except AuthError:
                raise
            except ChannelError as exc:
                logger.warning("%s", self.http.redact(
                    f"shiphero: inventory snapshot unusable ({exc}); reading warehouse_products page by page"))
            else:
                yield from records
                return
        yield from self._read_product_pages(since)

    def _read_product_pages(self, since: datetime | None) -> Iterator[Record]:
        for warehouse in self._scopes():
            variables = {"warehouse_id": warehouse, "updated_from": format_timestamp(since) if since else None,
                         "sku": None}
            for product in self._relay("warehouse_products", PRODUCTS_QUERY, variables):
                updated = product.get("updated_at")
                sid = f"{product.get('sku')}|{product.get('warehouse_id')}|{updated}"
                yield Record(sid, parse_timestamp(updated, assume_utc=True), product)

    # ------------------------------------------------------------------ inventory snapshot

    def read_snapshot_levels(self) -> list[Record]:
        """Every level of the configured warehouses from one snapshot each (all warehouses when none
        are configured), as records shaped like `warehouse_products` nodes. Raises `SnapshotError` (or
        the transport's error) when any snapshot cannot be used; nothing is returned half-read.

        The jobs run side by side: all are generated, then each is awaited and downloaded."""
        started = time.monotonic()
        slept = [0.0]
        jobs = []
        for warehouse in self._scopes():
            data: dict[str, Any] = {"new_format": True}  # the legacy layout is deprecated (2025-04-01)
            if warehouse:
                data["warehouse_id"] = warehouse
            # READ mode: a resent request only starts a second, harmless read-only job.
            result = self._graphql("inventory_generate_snapshot", GENERATE_SNAPSHOT_MUTATION, {"data": data})
            job = result.get("snapshot")
            if not isinstance(job, dict) or not job.get("snapshot_id"):
                raise BadResponse(self.channel, "inventory_generate_snapshot answered no snapshot_id")
            jobs.append((warehouse, str(job["snapshot_id"])))
        records: list[Record] = []
        for n, (warehouse, snapshot_id) in enumerate(jobs):
            try:
                job = self._await_snapshot(snapshot_id, started, slept)
            except ChannelError:
                for _, other in jobs[n + 1:]:  # the levels will be paged: the other jobs are not needed
                    self._abort_snapshot(other)
                raise
            document = self.download_snapshot(str(job["snapshot_url"]), snapshot_id)
            records.extend(self._snapshot_records(document, job, warehouse))
        return records

    def _await_snapshot(self, snapshot_id: str, started: float, slept: list[float]) -> dict[str, Any]:
        """Poll `inventory_snapshot` until the job succeeds; its failure or the timeout raises."""
        delay = self.snapshot_poll
        while True:
            result = self._graphql("inventory_snapshot", SNAPSHOT_QUERY, {"snapshot_id": snapshot_id})
            job = result.get("snapshot") or result.get("data")
            if not isinstance(job, dict):
                raise BadResponse(self.channel, f"inventory_snapshot {snapshot_id} answered no snapshot")
            status = _snapshot_status(job.get("status"))
            if status == "success":
                if not job.get("snapshot_url"):
                    raise SnapshotError(self.channel, f"snapshot {snapshot_id} succeeded without a snapshot_url")
                return job
            if status in SNAPSHOT_FAILED or status.startswith("error"):
                raise SnapshotError(self.channel, f"snapshot {snapshot_id} ended {status}: {job.get('error')}")
            if status not in SNAPSHOT_RUNNING:
                logger.warning("shiphero: snapshot %s has the undocumented status %r; still waiting",
                               snapshot_id, job.get("status"))
            # Elapsed time counts real seconds and the seconds slept (an injected sleep may not block).
            elapsed = max(time.monotonic() - started, slept[0])
            remaining = self.snapshot_timeout - elapsed
            if remaining <= 0:
                self._abort_snapshot(snapshot_id)
                raise SnapshotError(self.channel, f"snapshot {snapshot_id} still {status} after "
                                    f"{self.snapshot_timeout:g}s (snapshot_timeout)")
            wait = min(delay, remaining)
            self.http.sleep(wait)
            slept[0] += wait
            delay = min(delay * 1.5, 15.0)

    def _abort_snapshot(self, snapshot_id: str) -> None:
        """Best effort: a job given up on is aborted so it does not run on for nothing (a finished job
        stays as it is)."""
        try:
            self._graphql("inventory_abort_snapshot", ABORT_SNAPSHOT_MUTATION, {"data": {
                "snapshot_id": snapshot_id, "reason": "inventory-sync: snapshot_timeout reached"}})
        except ChannelError as exc:
            logger.info("%s", self.http.redact(f"shiphero: could not abort snapshot {snapshot_id}: {exc}"))

    def download_snapshot(self, url: str, snapshot_id: str = "") -> dict[str, Any]:
        """The snapshot's JSON file. The URL is pre-signed: it is fetched in a session of its own that
        never carries the ShipHero token, and its signature is kept out of logs. An expired (older than
        24 h) or missing file raises `SnapshotError` saying so."""
        parts = urlsplit(url)
        if not parts.scheme or not parts.netloc:
            raise SnapshotError(self.channel, f"snapshot {snapshot_id}: snapshot_url is not an absolute URL")
        secrets = [self._token] + ([parts.query] if parts.query else [])
        http = ChannelHttp(self.channel, f"{parts.scheme}://{parts.netloc}", headers={}, secrets=secrets,
                           **self._http_options)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            answer = http.request("GET", target, what=f"download of snapshot {snapshot_id}")
        except (AuthError, RequestRejected) as exc:
            reason = "has expired (ShipHero keeps a snapshot file for 24 h)" if exc.status == 403 \
                else "does not exist" if exc.status == 404 else "was refused"
            raise SnapshotError(self.channel, f"snapshot {snapshot_id}: the file at snapshot_url {reason} "
                                f"(HTTP {exc.status}); generate a new snapshot", status=exc.status) from None
        finally:
            http.close()
        if not isinstance(answer.data, dict) or not isinstance(answer.data.get("products"), dict):
            raise SnapshotError(self.channel, f"snapshot {snapshot_id}: the file has no products object")
        return answer.data

    def _snapshot_records(self, document: dict[str, Any], job: dict[str, Any],
                          warehouse: str | None) -> Iterator[Record]:
        """One record per product × warehouse, with the keys of a `warehouse_products` node that the
        staging model reads, at the snapshot's start (the levels were read no earlier than that, so a
        change during the job is read again by the next `updated_from` read)."""
        snapshot_id = str(job.get("snapshot_id"))
        # [U] `snapshot_started_at` is known only from client code parsing real files, not from ShipHero's
        # pages; without it the job's enqueue time stands in (earlier still, so equally safe for the cursor).
        as_of_text = document.get("snapshot_started_at") or job.get("enqueued_at") or job.get("created_at")
        try:
            as_of = parse_timestamp(as_of_text, assume_utc=True)
        except ValueError:
            as_of = None
        if as_of is None:
            raise SnapshotError(self.channel, f"snapshot {snapshot_id}: no usable time in the file or the job")
        stamp = format_timestamp(as_of)
        for product in self._snapshot_products(document, snapshot_id):
            sku = product.get("sku")
            for warehouse_id, level in product["warehouse_products"].items():
                if not isinstance(level, dict) or not isinstance(sku, str):
                    raise SnapshotError(self.channel, f"snapshot {snapshot_id}: malformed product {sku!r}")
                warehouse_id = level.get("warehouse_id") or warehouse_id
                if warehouse and warehouse_id != warehouse:
                    continue
                payload = {
                    "sku": sku,
                    "warehouse_id": warehouse_id,
                    "account_id": product.get("account_id"),
                    "on_hand": level.get("on_hand"),
                    "available": level.get("available"),
                    "allocated": level.get("allocated"),
                    "backorder": level.get("backorder"),
                    "reserve_inventory": level.get("reserve"),  # [U] `reserve` in the file: third-party parsers
                    "non_sellable_quantity": level.get("non_sellable"),
                    "snapshot_id": snapshot_id,
                    "snapshot_started_at": stamp,
                }
                # The source id names the snapshot: never the id of a paged read of the same level.
                yield Record(f"{sku}|{warehouse_id}|snapshot:{snapshot_id}", as_of, payload)

    def _snapshot_products(self, document: dict[str, Any], snapshot_id: str) -> Iterator[dict[str, Any]]:
        """Products from either layout: legacy `products{sku: product}` or `new_format`
        `products{account_id: {sku: product}}`."""
        for value in document["products"].values():
            if isinstance(value, dict) and isinstance(value.get("warehouse_products"), dict):
                yield value
                continue
            if not isinstance(value, dict):
                raise SnapshotError(self.channel, f"snapshot {snapshot_id}: products holds a non-object")
            for product in value.values():
                if not isinstance(product, dict) or not isinstance(product.get("warehouse_products"), dict):
                    raise SnapshotError(self.channel, f"snapshot {snapshot_id}: a product has no warehouse_products")
                yield product

    # ------------------------------------------------------------------ movements

    def read_movements(self, cursor: MovementCursor | None) -> Iterator[Record | Backlog]:
        """Inventory changes created since the cursor's re-read point (all when None), in time order
        across the configured warehouses (each warehouse's feed is ordered; they are merged, so the
        cursor never passes a change of one warehouse not yet read from another). Ends with a `Backlog`
        when `max_credit_wait` is spent before the end of the feed."""
        date_from = format_timestamp(cursor.read_from(self.lookback)) if cursor else None
        budget = [self.max_credit_wait]

        def changes(warehouse: str | None) -> Iterator[Record]:
            for change in self._relay("inventory_changes", CHANGES_QUERY,
                                      {"warehouse_id": warehouse, "date_from": date_from}, wait_budget=budget):
                if not change.get("id"):
                    raise BadResponse(self.channel, "inventory change without id")
                yield Record(str(change["id"]), parse_timestamp(change.get("created_at"), assume_utc=True), change)

        feeds = [changes(warehouse) for warehouse in self._scopes()]
        try:
            yield from heapq.merge(*feeds, key=_feed_order) if len(feeds) > 1 else feeds[0]
        except _CreditWaitSpent as spent:
            yield Backlog(str(spent))

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
