"""Shopify Admin GraphQL (`POST /admin/api/{version}/graphql.json`) over the shared world.

Serves `inventoryItems`, `inventoryItem`, `locations`, `location` (with its `inventoryLevels`, filterable
by `updated_at`) and the mutation
`inventorySetQuantities` with `changeFromQuantity` compare-and-set (2026-01), `compareQuantity`
(earlier versions) and `@idempotent(key:)`; cost-based leaky-bucket throttling with
`extensions.cost` on every reply (channel-apis.md §1).  Shopify exposes no movement history: the
world's online orders show up here only as `available`/`committed` changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from datetime import timedelta
from typing import Any

from ..faults import page_bounds
from ..scenario import Listing
from ..world import World, iso, parse_ts
from .base import BadRequest, ChannelApp, Request, Response, request_id
from .gql import GraphQLError, Operation, count_objects, estimate_cost, parse_operation, project

PATH = re.compile(r"^/admin/api/(\d{4}-\d{2}|unstable)/graphql\.json$")
QUANTITY_NAMES = (
    "available",
    "on_hand",
    "committed",
    "incoming",
    "reserved",
    "damaged",
    "safety_stock",
    "quality_control",
)
REASONS = (
    "correction",
    "cycle_count_available",
    "damaged",
    "other",
    "promotion",
    "received",
    "restock",
    "shrinkage",
    "movement_created",
    "movement_updated",
    "movement_received",
    "movement_canceled",
    "quality_control",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "safety_stock",
)
LOCATION_NAMES = {"WH-EAST": "East Warehouse", "WH-WEST": "West Warehouse"}
MUTATION_COST = 10
MAX_PAGE = 250


def _gid_num(gid: str) -> int:
    return int(gid.rsplit("/", 1)[1].split("?")[0])


def _compare(stamp: str, op: str, bound: str, value: str) -> bool:
    """A search-syntax time comparison (no operator: a prefix match). Compared as instants, so
    `...T09:00:00Z` and `...T09:00:00.000Z` are the same bound."""
    if not op:
        return stamp[: len(value)] == value
    try:
        have, limit = parse_ts(stamp), parse_ts(bound)
    except ValueError:
        raise GraphQLError(f"Invalid date in search query: {value!r}", {"code": "BAD_REQUEST"}) from None
    return {">": have > limit, ">=": have >= limit, "<": have < limit, "<=": have <= limit}[op]


def _cursor(last_id: int) -> str:
    return base64.b64encode(json.dumps({"last_id": last_id}, separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        return int(json.loads(base64.b64decode(cursor))["last_id"])
    except (ValueError, KeyError, TypeError):
        raise GraphQLError("Invalid cursor for current pagination sort.", {"code": "BAD_REQUEST"}) from None


class LeakyBucket:
    """Shopify's cost bucket: `size` points, refilled at `restore_rate` points per second."""

    def __init__(self, size: float, restore_rate: float) -> None:
        self.size, self.restore_rate = float(size), float(restore_rate)
        self.available, self.stamp = float(size), time.monotonic()

    def current(self) -> float:
        now = time.monotonic()
        self.available = min(self.size, self.available + (now - self.stamp) * self.restore_rate)
        self.stamp = now
        return self.available

    def status(self) -> dict[str, float]:
        return {
            "maximumAvailable": self.size,
            "currentlyAvailable": round(self.current(), 1),
            "restoreRate": self.restore_rate,
        }


class ShopifyApp(ChannelApp):
    name = "shopify"

    def __init__(
        self,
        world: World,
        token: str | None = None,
        bucket_size: float = 2000.0,
        restore_rate: float = 100.0,
        throttle_status: int = 200,
        max_query_cost: int = 1000,
    ) -> None:
        super().__init__(world, token)
        self.bucket = LeakyBucket(bucket_size, restore_rate)
        self.throttle_status, self.max_query_cost = throttle_status, max_query_cost
        self.idempotency: dict[str, tuple[str, dict[str, Any]]] = {}
        self.version = "2026-01"  # taken from each request's path; CAS rules depend on it
        self._groups = 0
        cat = world.catalog
        self._locations = {gid: loc for loc, gid in cat.shopify_locations.items()}
        self._items: dict[str, list[Listing]] = {}
        for lst in cat.listings_for("shopify"):
            self._items.setdefault(lst.channel_sku, []).append(lst)
        self._item_order = sorted(self._items, key=_gid_num)
        self._created = iso(world.scenario.anchor - timedelta(days=world.scenario.days))

    # -- shapes ---------------------------------------------------------------------------------
    def authorized(self, req: Request) -> bool:
        return req.header("x-shopify-access-token") == self.token

    def unauthorized(self, req: Request) -> Response:
        return Response(
            401, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
        )

    def server_error(self, status: int) -> Response:
        text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(
            status, "Error"
        )
        return Response(status, {"errors": text})

    def throttled(self, retry_after: float | None, requested: int | None = None) -> Response:
        body = {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    },
                }
            ],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": self.bucket.status(),
                }
            },
        }
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return Response(self.throttle_status, body, headers)

    def bad_request(self, exc: BadRequest) -> Response:
        return Response(exc.status, {"errors": exc.message})

    def decorate(self, req: Request, resp: Response) -> None:
        resp.headers.setdefault("X-Request-Id", request_id())

    # -- request --------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        m = PATH.match(req.path)
        if not m or req.method != "POST":
            return Response(404, {"errors": "Not Found"})
        self.version = m.group(1)
        body = req.json()
        if not isinstance(body, dict):
            raise BadRequest("Required parameter missing or invalid")
        try:
            op = parse_operation(body)
            requested = (
                MUTATION_COST * len(op.fields())
                if op.kind == "mutation"
                else estimate_cost(op, op.selection_set)
            )
        except GraphQLError as exc:
            return self._errors([exc], None, 0)
        if requested > self.max_query_cost:
            return self._errors(
                [
                    GraphQLError(
                        f"Query cost is {requested}, which exceeds the single query max cost limit ({self.max_query_cost}).",
                        {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": self.max_query_cost},
                    )
                ],
                requested,
                0,
            )
        if self.bucket.current() < requested:
            return self.throttled(None, requested)
        try:
            data, applied = self._mutation(op) if op.kind == "mutation" else (self._query(op), False)
        except GraphQLError as exc:
            self.bucket.available -= 1
            return self._errors([exc], requested, 1)
        actual = requested if op.kind == "mutation" else min(requested, count_objects(data))
        self.bucket.available -= actual
        return Response(
            200,
            {
                "data": data,
                "extensions": {
                    "cost": {
                        "requestedQueryCost": requested,
                        "actualQueryCost": actual,
                        "throttleStatus": self.bucket.status(),
                    }
                },
            },
            mutation=applied,
            page=op.kind == "query",
        )

    def _errors(self, errors: list[GraphQLError], requested: int | None, actual: int) -> Response:
        return Response(
            200,
            {
                "errors": [
                    {"message": e.message, **({"path": e.path} if e.path else {}), "extensions": e.extensions}
                    for e in errors
                ],
                "extensions": {
                    "cost": {
                        "requestedQueryCost": requested,
                        "actualQueryCost": actual,
                        "throttleStatus": self.bucket.status(),
                    }
                },
            },
        )

    # -- queries --------------------------------------------------------------------------------
    def _query(self, op: Operation) -> dict[str, Any]:
        root = {
            "__typename": "QueryRoot",
            "inventoryItems": self._inventory_items,
            "inventoryItem": lambda a: self._item(a.get("id")),
            "locations": self._locations_conn,
            "location": lambda a: self._location(a.get("id")),
            "shop": {
                "__typename": "Shop",
                "name": "Simulated Retailer",
                "myshopifyDomain": "sim.myshopify.com",
            },
        }
        return project(op, root, op.selection_set, [])

    def _connection(self, type_name: str, ids: list[int], args: dict[str, Any], node) -> dict[str, Any]:
        """Forward Relay pagination (`first`/`after`, `reverse`), as the connectors page."""
        size = args.get("first")
        if size is None:
            # Backward paging (`last`/`before`) is not simulated: say so rather than answer wrongly.
            raise GraphQLError(
                "you must provide first (last/before are not supported by the simulator)",
                {"code": "BAD_REQUEST"},
            )
        if not isinstance(size, int) or size < 0 or size > MAX_PAGE:
            raise GraphQLError(
                f"The argument `first` must be between 0 and {MAX_PAGE}.", {"code": "BAD_REQUEST"}
            )
        if args.get("reverse"):
            ids = ids[::-1]
        start = 0
        if args.get("after"):
            last_id = _decode_cursor(args["after"])
            start = next(
                (i for i, x in enumerate(ids) if (x < last_id if args.get("reverse") else x > last_id)),
                len(ids),
            )
        end, has_next = page_bounds(self.plan, self.world.fault_rng[self.name], start, size, len(ids))
        page = ids[start:end]
        nodes = [node(x) for x in page]
        return {
            "__typename": type_name,
            "nodes": nodes,
            "edges": [
                {"__typename": "Edge", "cursor": _cursor(x), "node": n}
                for x, n in zip(page, nodes, strict=True)
            ],
            "pageInfo": {
                "__typename": "PageInfo",
                "hasNextPage": has_next,
                "hasPreviousPage": start > 0,
                "startCursor": _cursor(page[0]) if page else None,
                "endCursor": _cursor(page[-1]) if page else None,
            },
        }

    def _inventory_items(self, args: dict[str, Any]) -> dict[str, Any]:
        by_num = {_gid_num(g): g for g in self._item_order}
        ids = [n for n, g in by_num.items() if self._matches(g, args.get("query"))]
        return self._connection("InventoryItemConnection", ids, args, lambda n: self._item(by_num[n]))

    def _matches(self, gid: str, query: str | None) -> bool:
        if not query:
            return True
        for field, op, value in re.findall(r"(\w+):(>=|<=|>|<)?['\"]?([^'\" ]+)['\"]?", query):
            lsts = self._items[gid]
            if field == "sku" and lsts[0].sku != value:
                return False
            if field == "id" and str(_gid_num(gid)) != value.rsplit("/", 1)[-1]:
                return False
            if field in ("updated_at", "created_at"):
                stamp = (
                    iso(
                        max(
                            self.world.shopify_levels[(x.channel_sku, x.channel_location)]["updated_at"]
                            for x in lsts
                        )
                    )
                    if field == "updated_at"
                    else self._created
                )
                bound = value if "T" in value else value + "T00:00:00.000Z"
                if not _compare(stamp, op, bound, value):
                    return False
        return True

    def _item(self, gid: str | None) -> dict[str, Any] | None:
        lsts = self._items.get(gid or "")
        if not lsts:
            return None
        w = self.world
        levels = {_gid_num(x.channel_location): x for x in lsts}
        updated = max(w.shopify_levels[(x.channel_sku, x.channel_location)]["updated_at"] for x in lsts)
        return {
            "__typename": "InventoryItem",
            "id": gid,
            "legacyResourceId": str(_gid_num(gid)),
            "sku": lsts[0].sku,
            "tracked": True,
            "createdAt": self._created,
            "updatedAt": iso(updated),
            "inventoryLevels": lambda a: self._connection(
                "InventoryLevelConnection", sorted(levels), a, lambda n: self._level(levels[n])
            ),
            "inventoryLevel": lambda a: next(
                (self._level(x) for x in lsts if x.channel_location == a.get("locationId")), None
            ),
        }

    def _view(self, lst: Listing) -> dict[str, int]:
        lvl = self.world.shopify_levels[(lst.channel_sku, lst.channel_location)]
        available = int(self.world.uom_view(self.name, lst.sku, lvl["available"]))
        committed = int(self.world.uom_view(self.name, lst.sku, lvl["committed"]))
        return {"available": available, "committed": committed, "on_hand": available + committed}

    def _level(self, lst: Listing) -> dict[str, Any]:
        lvl = self.world.shopify_levels[(lst.channel_sku, lst.channel_location)]
        item_num, loc_num = _gid_num(lst.channel_sku), _gid_num(lst.channel_location)

        def quantities(args: dict[str, Any]) -> list[dict[str, Any]]:
            names = args.get("names")
            if not isinstance(names, list):
                raise GraphQLError(
                    "Field 'quantities' is missing required arguments: names",
                    {"code": "missingRequiredArguments"},
                )
            bad = [n for n in names if n not in QUANTITY_NAMES]
            if bad:
                raise GraphQLError(
                    f"The quantity name(s) {', '.join(bad)} are invalid.", {"code": "BAD_REQUEST"}
                )
            view = self._view(lst)
            return [
                {
                    "__typename": "InventoryQuantity",
                    "id": f"gid://shopify/InventoryQuantity/{item_num}?location_id={loc_num}&name={n}",
                    "name": n,
                    "quantity": view.get(n, 0),
                    "updatedAt": iso(lvl["updated_at"]) if n in view else None,
                }
                for n in names
            ]

        return {
            "__typename": "InventoryLevel",
            "id": f"gid://shopify/InventoryLevel/{loc_num}?inventory_item_id={item_num}",
            "location": self._location(lst.channel_location),
            "quantities": quantities,
            "item": {"__typename": "InventoryItem", "id": lst.channel_sku, "sku": lst.sku, "tracked": True},
            "createdAt": self._created,
            "updatedAt": iso(lvl["updated_at"]),
        }

    def _location(self, gid: str | None) -> dict[str, Any] | None:
        loc = self._locations.get(gid or "")
        if loc is None:
            return None
        return {
            "__typename": "Location",
            "id": gid,
            "legacyResourceId": str(_gid_num(gid)),
            "name": LOCATION_NAMES.get(loc, loc),
            "isActive": True,
            "inventoryLevels": lambda a: self._location_levels(gid, a),
        }

    def _location_levels(self, gid: str, args: dict[str, Any]) -> dict[str, Any]:
        """`Location.inventoryLevels(first, after, query)`: the location's levels by item id, filtered by
        the documented search fields `updated_at`, `created_at` and `inventory_item_id`. A level's
        `updatedAt` moves with every quantity change (unlike its item's), so this is how a sync reads
        only what changed."""
        by_num = {
            _gid_num(lst.channel_sku): lst
            for lsts in self._items.values()
            for lst in lsts
            if lst.channel_location == gid
        }
        query = args.get("query")
        ids = sorted(n for n, lst in by_num.items() if self._level_matches(lst, query))
        return self._connection("InventoryLevelConnection", ids, args, lambda n: self._level(by_num[n]))

    def _level_matches(self, lst: Listing, query: str | None) -> bool:
        if not query:
            return True
        stamp = iso(self.world.shopify_levels[(lst.channel_sku, lst.channel_location)]["updated_at"])
        for field, op, value in re.findall(r"(\w+):(>=|<=|>|<)?['\"]?([^'\" ]+)['\"]?", query):
            if field == "inventory_item_id":
                if str(_gid_num(lst.channel_sku)) != value.rsplit("/", 1)[-1]:
                    return False
            elif field in ("updated_at", "created_at"):
                have = stamp if field == "updated_at" else self._created
                bound = value if "T" in value else value + "T00:00:00.000Z"
                if not _compare(have, op, bound, value):
                    return False
            else:
                raise GraphQLError(
                    f"Invalid search field '{field}' for inventoryLevels: use created_at, inventory_group_id, "
                    "inventory_item_id or updated_at",
                    {"code": "BAD_REQUEST"},
                )
        return True

    def _locations_conn(self, args: dict[str, Any]) -> dict[str, Any]:
        by_num = {_gid_num(g): g for g in self._locations}
        return self._connection(
            "LocationConnection", sorted(by_num), args, lambda n: self._location(by_num[n])
        )

    # -- mutations ------------------------------------------------------------------------------
    def _mutation(self, op: Operation) -> tuple[dict[str, Any], bool]:
        data: dict[str, Any] = {}
        applied_any = False
        for node in op.fields():
            key = node.alias.value if node.alias else node.name.value
            if node.name.value != "inventorySetQuantities":
                raise GraphQLError(
                    f"Field '{node.name.value}' doesn't exist on type 'Mutation'",
                    {"code": "undefinedField", "typeName": "Mutation", "fieldName": node.name.value},
                    [key],
                )
            payload, applied = self._set_quantities(op.args(node), op.directive_args(node, "idempotent"))
            applied_any |= applied
            data[key] = project(op, payload, node.selection_set, [key])
        return data, applied_any

    def _set_quantities(
        self, args: dict[str, Any], idempotent: dict[str, Any] | None
    ) -> tuple[dict[str, Any], bool]:
        inp = args.get("input")
        if not isinstance(inp, dict):
            raise GraphQLError(
                "Variable $input of type InventorySetQuantitiesInput! was provided invalid value",
                {"code": "INVALID_VARIABLE"},
            )
        fingerprint = hashlib.sha256(json.dumps(inp, sort_keys=True).encode()).hexdigest()
        key = (idempotent or {}).get("key")
        record_key = key or f"sha256:{fingerprint}"
        if key is not None and key in self.idempotency:
            seen_fp, payload = self.idempotency[key]
            self.world.record_request(self.name, key, False, {})
            if seen_fp != fingerprint:
                return self._user_errors(
                    [
                        (
                            "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                            ["input"],
                            "The same idempotency key was used with different parameters.",
                        )
                    ]
                ), False
            return payload, False
        payload, applied = self._apply_set(inp)
        if key is not None:
            self.idempotency[key] = (fingerprint, payload)
        self.world.record_request(self.name, record_key, applied, {"input": inp, "applied": applied})
        return payload, applied

    @staticmethod
    def _user_errors(errors: list[tuple[str, list[str], str]]) -> dict[str, Any]:
        return {
            "__typename": "InventorySetQuantitiesPayload",
            "inventoryAdjustmentGroup": None,
            "userErrors": [
                {"__typename": "InventorySetQuantitiesUserError", "code": c, "field": f, "message": m}
                for c, f, m in errors
            ],
        }

    def _apply_set(self, inp: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        w = self.world
        errors: list[tuple[str, list[str], str]] = []
        name, reason = inp.get("name"), inp.get("reason")
        if name not in ("available", "on_hand"):
            errors.append(
                (
                    "INVALID_NAME",
                    ["input", "name"],
                    "The quantity name must be either 'available' or 'on_hand'.",
                )
            )
        if reason not in REASONS:
            errors.append(("INVALID_REASON", ["input", "reason"], "The specified reason is invalid."))
        uri = inp.get("referenceDocumentUri")
        if uri is not None and not re.match(r"^[a-zA-Z][\w+.-]*:", str(uri)):
            errors.append(
                (
                    "INVALID_REFERENCE_DOCUMENT",
                    ["input", "referenceDocumentUri"],
                    "The reference document URI isn't a valid URI.",
                )
            )
        quantities = inp.get("quantities") or []
        if len(quantities) > MAX_PAGE:
            raise GraphQLError(
                f"The input array size of {len(quantities)} is greater than the maximum allowed of {MAX_PAGE}.",
                {"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        targets: list[tuple[Listing, int, int]] = []
        seen: set[tuple[str, str]] = set()
        for i, q in enumerate(quantities):
            field = ["input", "quantities", str(i)]
            item, loc, qty = q.get("inventoryItemId"), q.get("locationId"), q.get("quantity")
            if item not in self._items:
                errors.append(
                    (
                        "INVALID_INVENTORY_ITEM",
                        field + ["inventoryItemId"],
                        "The specified inventory item could not be found.",
                    )
                )
                continue
            if loc not in self._locations:
                errors.append(
                    ("INVALID_LOCATION", field + ["locationId"], "The specified location could not be found.")
                )
                continue
            lst = w.listing(self.name, item, loc)
            if lst is None:
                errors.append(
                    (
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                        field + ["locationId"],
                        "The specified inventory item is not stocked at the location.",
                    )
                )
                continue
            if (item, loc) in seen:
                errors.append(
                    (
                        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                        field,
                        "The combination of inventoryItemId and locationId must be unique.",
                    )
                )
                continue
            seen.add((item, loc))
            if not isinstance(qty, int) or qty > 1_000_000_000 or qty < -1_000_000_000:
                code = (
                    "INVALID_QUANTITY_TOO_HIGH"
                    if isinstance(qty, int) and qty > 0
                    else "INVALID_QUANTITY_TOO_LOW"
                )
                errors.append((code, field + ["quantity"], "The quantity is out of range."))
                continue
            if name == "on_hand" and qty < 0:
                errors.append(
                    ("INVALID_QUANTITY_NEGATIVE", field + ["quantity"], "The quantity can't be negative.")
                )
                continue
            if self.plan.cas_race_rate and w.fault_rng[self.name].random() < self.plan.cas_race_rate:
                w.cas_race(lst)
            current = self._view(lst)[name] if name in ("available", "on_hand") else 0
            if "changeFromQuantity" in q and self.version >= "2026-01":
                expected = q["changeFromQuantity"]
                if expected is not None and expected != current:
                    errors.append(
                        (
                            "CHANGE_FROM_QUANTITY_STALE",
                            field + ["changeFromQuantity"],
                            "The changeFromQuantity value does not match persisted value.",
                        )
                    )
                    continue
            elif not inp.get("ignoreCompareQuantity"):
                if q.get("compareQuantity") is None:
                    errors.append(
                        (
                            "COMPARE_QUANTITY_REQUIRED",
                            field + ["compareQuantity"],
                            "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.",
                        )
                    )
                    continue
                if q["compareQuantity"] != current:
                    errors.append(
                        (
                            "COMPARE_QUANTITY_STALE",
                            field + ["compareQuantity"],
                            "The compareQuantity value does not match persisted value.",
                        )
                    )
                    continue
            targets.append((lst, current, qty))
        if errors:
            return self._user_errors(errors), False

        self._groups += 1
        changes = []
        for lst, current, qty in targets:
            delta = qty - current
            lvl = w.shopify_levels[(lst.channel_sku, lst.channel_location)]
            new_available = qty if name == "available" else qty - self._view(lst)["committed"]
            # Stored in the channel's own (possibly confused) unit, so the next read shows what was set.
            lvl["available"] = w.uom_unview(self.name, lst.sku, new_available)
            lvl["updated_at"] = w.now
            view = self._view(lst)
            item = {"__typename": "InventoryItem", "id": lst.channel_sku, "sku": lst.sku}
            location = self._location(lst.channel_location)
            for n in ("available", "on_hand"):
                changes.append(
                    {
                        "__typename": "InventoryChange",
                        "name": n,
                        "delta": delta,
                        "quantityAfterChange": view[n],
                        "item": item,
                        "location": location,
                        "ledgerDocumentUri": None,
                    }
                )
        group = {
            "__typename": "InventoryAdjustmentGroup",
            "id": f"gid://shopify/InventoryAdjustmentGroup/{700000 + self._groups}",
            "createdAt": iso(w.now),
            "reason": reason,
            "referenceDocumentUri": uri,
            "app": {"__typename": "App", "title": "inventory-sync"},
            "changes": lambda a: [
                c for c in changes if not a.get("quantityNames") or c["name"] in a["quantityNames"]
            ],
        }
        return {
            "__typename": "InventorySetQuantitiesPayload",
            "inventoryAdjustmentGroup": group,
            "userErrors": [],
        }, True
