"""ShipHero public GraphQL (`POST /graphql`) over the shared world (channel-apis.md §5).

`warehouse_products` (levels), `inventory_changes` (history, filtered and ordered on `created_at`)
and the `inventory_replace` mutation, each wrapped in `{request_id, complexity, data}` with Relay
`data(first, after)` connections whose cursors are graphql-relay `arrayconnection:N` offsets.
A credit bucket (4004 credits, 60/s) answers 429 + Retry-After when a request cannot be paid for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
import uuid
from datetime import datetime
from typing import Any

from graphql.language import FieldNode

from ..faults import page_bounds
from ..world import World, iso, parse_ts
from .base import BadRequest, ChannelApp, Request, Response
from .gql import GraphQLError, Operation, parse_operation, project

MAX_PAGE = 100
ACCOUNT_ID = "QWNjb3VudDox"


def _cursor(offset: int) -> str:
    return base64.b64encode(f"arrayconnection:{offset}".encode()).decode()


def _offset(cursor: str) -> int:
    try:
        prefix, n = base64.b64decode(cursor).decode().split(":")
        assert prefix == "arrayconnection"
        return int(n)
    except Exception:  # any malformed cursor is the same client error
        raise GraphQLError("Invalid cursor") from None


def _date(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_ts(str(value) if "T" in str(value) else f"{value}T00:00:00+00:00")
    except ValueError:
        raise GraphQLError(f"Invalid date for {name}: {value}") from None


class ShipHeroApp(ChannelApp):
    name = "shiphero"

    def __init__(
        self, world: World, token: str | None = None, credits: float = 4004.0, restore_rate: float = 60.0
    ) -> None:
        super().__init__(world, token)
        self.max_credits, self.restore_rate = float(credits), float(restore_rate)
        self.credits, self.stamp = float(credits), time.monotonic()

    # -- shapes ---------------------------------------------------------------------------------
    def is_public(self, req: Request) -> bool:
        return req.path == "/auth/token"

    def unauthorized(self, req: Request) -> Response:
        return Response(401, {"errors": [{"message": "Invalid or expired token", "code": 22}]})

    def server_error(self, status: int) -> Response:
        return Response(status, {"errors": [{"message": "Internal Server Error", "code": status}]})

    def throttled(self, retry_after: float | None, required: int = 1) -> Response:
        wait = retry_after if retry_after is not None else 1
        body = {
            "errors": [
                {
                    "code": 30,
                    "message": (
                        f"There are not enough credits to perform the requested operation, which requires {required} credits. "
                        f"The account has {int(self._available())} left. Try again in {math.ceil(wait)} seconds"
                    ),
                    "required_credits": required,
                    "remaining_credits": int(self._available()),
                    "time_remaining": f"{math.ceil(wait)} seconds",
                }
            ]
        }
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after is not None else {}
        return Response(429, body, headers)

    def bad_request(self, exc: BadRequest) -> Response:
        return Response(exc.status, {"errors": [{"message": exc.message, "code": 4}]})

    def _available(self) -> float:
        now = time.monotonic()
        self.credits = min(self.max_credits, self.credits + (now - self.stamp) * self.restore_rate)
        self.stamp = now
        return self.credits

    # -- request --------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.path == "/auth/token" and req.method == "POST":
            return self._token(req)
        if req.path != "/graphql" or req.method != "POST":
            return Response(404, {"errors": [{"message": "Not Found", "code": 404}]})
        body = req.json()
        if not isinstance(body, dict):
            raise BadRequest("POST body must be a JSON object")
        try:
            op = parse_operation(body)
            roots = op.fields()
            required = sum(self._complexity(op, n) for n in roots)
        except GraphQLError as exc:
            return Response(200, {"errors": [{"message": exc.message, "code": 4}], "data": None})
        if required > self.max_credits:
            return Response(
                200,
                {
                    "errors": [
                        {
                            "message": f"Query complexity {required} exceeds the maximum of "
                            f"{int(self.max_credits)} credits",
                            "code": 30,
                        }
                    ],
                    "data": None,
                },
            )
        if self._available() < required:
            wait = (required - self.credits) / self.restore_rate
            return self.throttled(wait, required)
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        applied = False
        for node in roots:
            key = node.alias.value if node.alias else node.name.value
            rid = uuid.UUID(int=self.world.fault_rng[self.name].getrandbits(128)).hex[:24]
            try:
                value, is_write = self._root(op, node, rid)
                applied |= is_write
                data[key] = project(op, value, node.selection_set, [key])
            except GraphQLError as exc:
                data[key] = None
                errors.append(
                    {
                        "message": exc.message,
                        "operation": node.name.value,
                        "field": node.name.value,
                        "request_id": rid,
                        "code": exc.extensions.get("code", 5),
                    }
                )
        self.credits -= max(1, required)
        out: dict[str, Any] = {"data": data}
        if errors:
            out["errors"] = errors
        return Response(200, out, mutation=applied, page=op.kind == "query")

    def _token(self, req: Request) -> Response:
        """`POST /auth/token` with `{username, password}`: any non-empty pair gets the configured token."""
        body = req.json() or {}
        if not body.get("username") or not body.get("password"):
            return Response(401, {"error": "invalid_grant", "error_description": "Wrong email or password."})
        return Response(
            200,
            {
                "access_token": self.token,
                "expires_in": 2419200,
                "refresh_token": "sim-shiphero-refresh",
                "scope": "openid profile offline_access",
                "token_type": "Bearer",
            },
        )

    def _complexity(self, op: Operation, node: FieldNode) -> int:
        """Credits a root field needs: 1, plus the page size of its `data` connection."""
        inner = (
            next((f for f in op.fields(node.selection_set) if f.name.value == "data"), None)
            if node.selection_set
            else None
        )
        size = op.args(inner).get("first", MAX_PAGE) if inner is not None else 0
        return 1 + (int(size) if isinstance(size, int) else MAX_PAGE)

    def _root(self, op: Operation, node: FieldNode, rid: str) -> tuple[dict[str, Any], bool]:
        name, args = node.name.value, op.args(node)
        if op.kind == "mutation":
            if name != "inventory_replace":
                raise GraphQLError(f"Cannot query field '{name}' on type 'Mutation'.", {"code": 4})
            return self._replace(args.get("data") or {}, rid), True
        if name == "warehouse_products":
            rows = self._products(args)
            fn = self._product
        elif name == "inventory_changes":
            rows = self._changes(args)
            fn = self._change
        else:
            raise GraphQLError(f"Cannot query field '{name}' on type 'Query'.", {"code": 4})
        required = self._complexity(op, node)
        return {
            "__typename": "Wrapper",
            "request_id": rid,
            "complexity": required,
            "data": lambda a: self._connection(rows, a, fn),
        }, False

    def _connection(self, rows: list[Any], args: dict[str, Any], fn) -> dict[str, Any]:
        first = args.get("first", MAX_PAGE)
        if not isinstance(first, int) or not 0 < first <= MAX_PAGE:
            raise GraphQLError(f"first must be between 1 and {MAX_PAGE}")
        start = _offset(args["after"]) + 1 if args.get("after") else 0
        plan, rng = self.plan, self.world.fault_rng[self.name]
        end, has_next = page_bounds(plan, rng, start, first, len(rows))
        idx = list(range(start, end))
        if idx and plan.dup_rate and rows and rng.random() < plan.dup_rate:
            idx.insert(rng.randrange(len(idx) + 1), rng.randrange(0, end))
        edges = [{"__typename": "Edge", "cursor": _cursor(i), "node": fn(rows[i])} for i in idx]
        return {
            "__typename": "Connection",
            "edges": edges,
            "pageInfo": {
                "__typename": "PageInfo",
                "hasNextPage": has_next,
                "hasPreviousPage": start > 0,
                "startCursor": _cursor(start) if idx else None,
                "endCursor": _cursor(end - 1) if idx else None,
            },
        }

    # -- warehouse products ---------------------------------------------------------------------
    def _products(self, args: dict[str, Any]) -> list[tuple[str, str]]:
        w = self.world
        frm, to = _date(args.get("updated_from"), "updated_from"), _date(args.get("updated_to"), "updated_to")
        out = []
        for lst in w.catalog.listings_for(self.name):
            prod = w.shiphero_products[(lst.channel_sku, lst.channel_location)]
            if args.get("warehouse_id") and lst.channel_location != args["warehouse_id"]:
                continue
            if args.get("sku") and lst.channel_sku != args["sku"]:
                continue
            if (frm and prod["updated_at"] < frm) or (to and prod["updated_at"] > to):
                continue
            out.append((lst.channel_sku, lst.channel_location))
        return sorted(out, key=lambda k: w.shiphero_products[k]["legacy_id"])

    def _product(self, key: tuple[str, str]) -> dict[str, Any]:
        w = self.world
        prod = w.shiphero_products[key]
        lst = w.listing(self.name, *key)
        on_hand = int(w.uom_view(self.name, lst.sku, prod["on_hand"]))
        allocated = prod["allocated"]
        return {
            "__typename": "WarehouseProduct",
            "id": prod["id"],
            "legacy_id": prod["legacy_id"],
            "account_id": ACCOUNT_ID,
            "sku": key[0],
            "warehouse_id": key[1],
            "warehouse_identifier": lst.location,
            "on_hand": on_hand,
            "available": on_hand - allocated,
            "allocated": allocated,
            "backorder": max(0, allocated - on_hand),
            "reserve_inventory": 0,
            "non_sellable_quantity": 0,
            "inventory_bin": "A-01",
            "created_at": iso(prod["created_at"]),
            "updated_at": iso(prod["updated_at"]),
        }

    # -- inventory changes ----------------------------------------------------------------------
    def _changes(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        frm, to = _date(args.get("date_from"), "date_from"), _date(args.get("date_to"), "date_to")
        rows = [
            c
            for c in self.world.shiphero_changes
            if not c["_hidden"]
            and (not args.get("sku") or c["sku"] == args["sku"])
            and (not args.get("warehouse_id") or c["warehouse_id"] == args["warehouse_id"])
            and (not frm or c["created_at"] >= frm)
            and (not to or c["created_at"] <= to)
            and (not args.get("reason") or args["reason"].lower() in c["reason"].lower())
        ]
        return sorted(rows, key=lambda c: (c["created_at"], c["legacy_id"]))

    def _change(self, c: dict[str, Any]) -> dict[str, Any]:
        w = self.world
        lst = w.listing(self.name, c["sku"], c["warehouse_id"])
        out = {k: v for k, v in c.items() if not k.startswith("_")}
        out["previous_on_hand"] = int(w.uom_view(self.name, lst.sku, c["previous_on_hand"]))
        out["change_in_on_hand"] = int(w.uom_view(self.name, lst.sku, c["change_in_on_hand"]))
        out["created_at"] = iso(c["created_at"])
        out["__typename"] = "InventoryChange"
        out.update(lot_id=None, lot_name=None, lot_expiration=None)
        return out

    # -- inventory_replace ----------------------------------------------------------------------
    def _replace(self, data: dict[str, Any], rid: str) -> dict[str, Any]:
        w = self.world
        for name in ("sku", "warehouse_id", "quantity"):
            if data.get(name) is None:
                raise GraphQLError(
                    f"Field 'ReplaceInventoryInput.{name}' of required type was not provided.", {"code": 4}
                )
        lst = w.listing(self.name, data["sku"], data["warehouse_id"])
        if lst is None:
            raise GraphQLError(
                f"Product {data['sku']} not found in warehouse {data['warehouse_id']}", {"code": 5}
            )
        if not isinstance(data["quantity"], int) or data["quantity"] < 0:
            raise GraphQLError("quantity must be a non-negative integer", {"code": 4})
        prod = w.shiphero_products[(lst.channel_sku, lst.channel_location)]
        previous = int(w.uom_view(self.name, lst.sku, prod["on_hand"]))
        prod["on_hand"] = w.uom_unview(self.name, lst.sku, data["quantity"])
        prod["updated_at"] = w.now
        n = int(w.next_id())
        w.shiphero_changes.append(
            {
                "id": base64.b64encode(f"InventoryChange:{n}".encode()).decode(),
                "legacy_id": n,
                "user_id": "VXNlcjoy",
                "account_id": ACCOUNT_ID,
                "warehouse_id": lst.channel_location,
                "sku": lst.sku,
                "previous_on_hand": w.uom_unview(self.name, lst.sku, previous),
                "change_in_on_hand": prod["on_hand"] - w.uom_unview(self.name, lst.sku, previous),
                "reason": data.get("reason") or "Inventory replaced via API",
                "cycle_counted": False,
                "location_id": data.get("location_id"),
                "created_at": w.now,
                "_hidden": False,
            }
        )
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        w.record_request(self.name, f"sha256:{digest}", True, {"data": data, "previous_on_hand": previous})
        return {
            "__typename": "UpdateInventoryOutput",
            "request_id": rid,
            "complexity": 10,
            "warehouse_product": self._product((lst.channel_sku, lst.channel_location)),
        }
