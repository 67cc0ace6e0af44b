"""ShipHero public GraphQL (`POST /graphql`) over the shared world (channel-apis.md §5).

`warehouse_products` (levels), `inventory_changes` (history, filtered and ordered on `created_at`)
and the `inventory_replace` mutation, each wrapped in `{request_id, complexity, data}` with Relay
`data(first, after)` connections whose cursors are graphql-relay `arrayconnection:N` offsets.
A credit bucket (4004 credits, 60/s) answers 429 + Retry-After when a request cannot be paid for;
`credits_spent` counts what was charged.

The inventory snapshot, ShipHero's bulk path for levels: `inventory_generate_snapshot` starts an
asynchronous job, `inventory_snapshot(snapshot_id)` / `inventory_snapshots(...)` report it
(`enqueued` → `processing` → `success` after `snapshot_delay` wall-clock seconds), and the JSON file is
served at a pre-signed-looking `snapshot_url` on this same server (`GET /snapshots/<id>.json?X-Amz-...`,
no bearer token, expires 24 h of simulated time after the job finished). The file is captured in one
instant, with the same figures `warehouse_products` shows then (unit-confusion view included).
Sources: developer.shiphero.com "Inventory Snapshot" example and the schema pages
`inventory-generate-snapshot(-input)`, `inventory-snapshot(s)`, `inventory-snapshot-output`; the file's
layout from ShipHero's community announcements (t/2358, t/3114) and the changelog "New fields for the
inventory snapshot and old format deprecation". `[U]` marks what those do not confirm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from graphql.language import FieldNode

from ..faults import page_bounds
from ..world import World, iso, parse_ts
from .base import BadRequest, ChannelApp, Request, Response
from .gql import GraphQLError, Operation, parse_operation, project

MAX_PAGE = 100
ACCOUNT_ID = "QWNjb3VudDox"

# The documented example reply of `inventory_generate_snapshot` reports complexity 30 (the example
# page); that every call costs exactly that is [U]. A status query's cost is [U]: one credit here.
SNAPSHOT_GENERATE_COMPLEXITY = 30
SNAPSHOT_QUERY_COMPLEXITY = 1
# "available for download for 24 hours" (Inventory Snapshot page).
SNAPSHOT_TTL = timedelta(hours=24)
# Documented statuses (inventory_snapshots `status` argument): pending, enqueued, processing, success,
# error, aborted. A 2026 community thread (t/3637) shows the mutation answering the enum's repr,
# "InventorySnapshotStatus.enqueued"; whether queries do too is [U] (they answer plain values here).
SNAPSHOT_STATUS_REPR = "InventorySnapshotStatus."
SNAPSHOT_OUTCOMES = ("success", "error", "stall")


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
        self,
        world: World,
        token: str | None = None,
        credits: float = 4004.0,
        restore_rate: float = 60.0,
        snapshot_delay: float = 0.5,
        snapshot_outcome: str = "success",
    ) -> None:
        """`snapshot_delay`: wall-clock seconds a snapshot job takes (a third enqueued, the rest
        processing). `snapshot_outcome`: how jobs end, `success`, `error` (the job fails) or `stall`
        (it never leaves `processing`); an attribute, so a test can switch it at runtime."""
        super().__init__(world, token)
        if snapshot_outcome not in SNAPSHOT_OUTCOMES:
            raise ValueError(f"snapshot_outcome must be one of {SNAPSHOT_OUTCOMES}")
        self.max_credits, self.restore_rate = float(credits), float(restore_rate)
        self.credits, self.stamp = float(credits), time.monotonic()
        self.credits_spent = 0.0
        self.snapshot_delay, self.snapshot_outcome = float(snapshot_delay), snapshot_outcome
        self.snapshots: dict[str, dict[str, Any]] = {}
        self._sign_key = hashlib.sha256(f"snapshot-url:{self.token}".encode()).digest()
        self._host = "127.0.0.1"

    # -- shapes ---------------------------------------------------------------------------------
    def is_public(self, req: Request) -> bool:
        # A snapshot URL is pre-signed (an S3-style link in real ShipHero): it carries no bearer token.
        return req.path == "/auth/token" or req.path.startswith("/snapshots/")

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
        if req.path.startswith("/snapshots/") and req.method == "GET":
            return self._download(req)
        if req.path != "/graphql" or req.method != "POST":
            return Response(404, {"errors": [{"message": "Not Found", "code": 404}]})
        body = req.json()
        if not isinstance(body, dict):
            raise BadRequest("POST body must be a JSON object")
        self._host = req.header("host") or self._host  # where this server is reached, for snapshot URLs
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
        self.credits_spent += max(1, required)
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
        """Credits a root field needs: 1, plus the page size of its `data` connection (the snapshot
        job's fields have their own costs: it is the cheap bulk path)."""
        name = node.name.value
        if name in ("inventory_generate_snapshot", "inventory_abort_snapshot"):
            return SNAPSHOT_GENERATE_COMPLEXITY if name == "inventory_generate_snapshot" else 5
        if name == "inventory_snapshot":
            return SNAPSHOT_QUERY_COMPLEXITY
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
            if name == "inventory_generate_snapshot":
                return self._generate_snapshot(args.get("data") or {}, rid), False
            if name == "inventory_abort_snapshot":
                return self._abort_snapshot(args.get("data") or {}, rid), False
            if name != "inventory_replace":
                raise GraphQLError(f"Cannot query field '{name}' on type 'Mutation'.", {"code": 4})
            return self._replace(args.get("data") or {}, rid), True
        if name == "inventory_snapshot":
            job = self._job(args.get("snapshot_id"))
            view = self._snapshot_view(job)
            # `data` and `snapshot` carry the same object (the schema lists both).
            return {"__typename": "InventorySnapshotQueryResult", "request_id": rid,
                    "complexity": SNAPSHOT_QUERY_COMPLEXITY, "data": view, "snapshot": view}, False
        if name == "inventory_snapshots":
            rows = self._snapshot_rows(args)
            required = self._complexity(op, node)
            conn = lambda a: self._connection(rows, a, self._snapshot_view)  # noqa: E731
            return {"__typename": "InventorySnapshotsQueryResult", "request_id": rid, "complexity": required,
                    "data": conn, "snapshots": conn}, False
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

    # -- inventory snapshot ---------------------------------------------------------------------
    def _generate_snapshot(self, data: dict[str, Any], rid: str) -> dict[str, Any]:
        """`inventory_generate_snapshot(data: InventoryGenerateSnapshotInput!)`: enqueue a job.

        Input fields (schema page): customer_account_id, warehouse_id, notification_email, post_url,
        post_url_pre_check, new_format, updated_from, has_inventory. Nothing is emailed or POSTed here:
        the job is read back with `inventory_snapshot`. An unknown warehouse is refused with the
        not-found code [U: ShipHero's exact message]."""
        w = self.world
        warehouse = data.get("warehouse_id")
        if warehouse and warehouse not in w.catalog.shiphero_warehouses.values():
            raise GraphQLError(f"Warehouse {warehouse} not found", {"code": 5})
        updated_from = _date(data.get("updated_from"), "updated_from")
        # A Mongo-ObjectId-like id (own counter: the world's ids stay as they would be without snapshots).
        sid = hashlib.sha256(f"snapshot:{len(self.snapshots)}:{rid}".encode()).hexdigest()[:24]
        job = {
            "snapshot_id": sid,
            "job_user_id": "VXNlcjoy",
            "job_account_id": ACCOUNT_ID,
            "warehouse_id": warehouse,
            "customer_account_id": data.get("customer_account_id"),
            "notification_email": data.get("notification_email"),
            "email_error": None,
            "post_url": data.get("post_url"),
            "post_error": None,
            "post_url_pre_check": data.get("post_url_pre_check", True),
            "status": "enqueued",
            "error": None,
            "created_at": w.now,
            "enqueued_at": w.now,
            "updated_at": w.now,
            "snapshot_url": None,
            "snapshot_expiration": None,
            "new_format": bool(data.get("new_format")),
            "_started": time.monotonic(),
            "_updated_from": updated_from,
            "_has_inventory": bool(data.get("has_inventory")),
            "_outcome": self.snapshot_outcome,
            "_file": None,
        }
        self.snapshots[sid] = job
        view = self._snapshot_view(job)
        view["status"] = SNAPSHOT_STATUS_REPR + view["status"]  # as observed on the mutation (t/3637)
        return {"__typename": "InventorySnapshotOutput", "request_id": rid,
                "complexity": SNAPSHOT_GENERATE_COMPLEXITY, "snapshot": view}

    def _abort_snapshot(self, data: dict[str, Any], rid: str) -> dict[str, Any]:
        """`inventory_abort_snapshot(data: {snapshot_id, reason})`: a job not yet finished ends `aborted`."""
        job = self._job(data.get("snapshot_id"))
        self._advance(job)
        if job["status"] not in ("success", "error", "aborted"):
            job.update(status="aborted", error=data.get("reason") or "Aborted by the user", updated_at=self.world.now)
        return {"__typename": "InventorySnapshotOutput", "request_id": rid, "complexity": 5,
                "snapshot": self._snapshot_view(job)}

    def _job(self, snapshot_id: Any) -> dict[str, Any]:
        job = self.snapshots.get(str(snapshot_id)) if snapshot_id else None
        if job is None:
            raise GraphQLError(f"Snapshot {snapshot_id} not found", {"code": 5})
        return job

    def _snapshot_rows(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """`inventory_snapshots(warehouse_id, customer_account_id, status)`; `status` takes a comma list,
        and a leading `!` excludes the listed statuses (schema page)."""
        spec = str(args.get("status") or "")
        exclude = spec.startswith("!")
        wanted = {s.strip() for s in spec.lstrip("!").split(",") if s.strip()}
        rows = []
        for job in self.snapshots.values():
            self._advance(job)
            if args.get("warehouse_id") and job["warehouse_id"] != args["warehouse_id"]:
                continue
            if args.get("customer_account_id") and job["customer_account_id"] != args["customer_account_id"]:
                continue
            if wanted and ((job["status"] in wanted) == exclude):
                continue
            rows.append(job)
        return sorted(rows, key=lambda j: (j["created_at"], j["snapshot_id"]))

    def _snapshot_view(self, job: dict[str, Any]) -> dict[str, Any]:
        """The `InventorySnapshot` object as the API shows it now."""
        self._advance(job)
        out = {k: v for k, v in job.items() if not k.startswith("_")}
        for k in ("created_at", "enqueued_at", "updated_at", "snapshot_expiration"):
            out[k] = iso(out[k]) if out[k] is not None else None
        out["__typename"] = "InventorySnapshot"
        return out

    def _advance(self, job: dict[str, Any]) -> None:
        """Move a job along by the wall clock: enqueued for the first third of `snapshot_delay`, then
        processing; at the end it fails, stalls or captures the levels in one instant (world time)."""
        if job["status"] not in ("enqueued", "processing"):
            return
        w = self.world
        elapsed = time.monotonic() - job["_started"]
        if job["status"] == "enqueued" and elapsed >= self.snapshot_delay / 3:
            job.update(status="processing", updated_at=w.now)
        if elapsed < self.snapshot_delay or job["_outcome"] == "stall":
            return
        if job["_outcome"] == "error":
            # [U] ShipHero's failure text; the job ends `error` with a message in `error`.
            job.update(status="error", error="Snapshot generation failed: worker terminated", updated_at=w.now)
            return
        job["_file"] = json.dumps(self._snapshot_file(job)).encode()
        date = w.now.strftime("%Y%m%dT%H%M%SZ")
        signature = hmac.new(self._sign_key, f"{job['snapshot_id']}|{date}".encode(), "sha256").hexdigest()
        url = (
            f"http://{self._host}/snapshots/{job['snapshot_id']}.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Date={date}&X-Amz-Expires={int(SNAPSHOT_TTL.total_seconds())}&X-Amz-Signature={signature}"
        )
        job.update(status="success", updated_at=w.now, snapshot_url=url, snapshot_expiration=w.now + SNAPSHOT_TTL)

    def _snapshot_file(self, job: dict[str, Any]) -> dict[str, Any]:
        """The JSON file: products (by SKU; by account id then SKU in `new_format`) → warehouse_products
        (by warehouse id) → item_bins. The per-SKU entry follows ShipHero's published extracts (t/2358,
        t/3114): sku, account_id, vendors, warehouse_products{warehouse_id, on_hand, allocated, backorder,
        available, non_sellable, item_bins{location_id, location_name, lot_id, lot_name, expiration_date,
        sellable, quantity}}. [S] `reserve` and the top-level snapshot_id, warehouse_id,
        customer_account_id, snapshot_started_at, snapshot_finished_at come from client code that parses
        real files, not from ShipHero's pages. `new_format` adds sell_ahead, qty_in_totes (placed on the
        warehouse product here, [U]) and barcode, dimensions, thumbnail, large_thumbnail (on the SKU, [U])."""
        w = self.world
        taken = iso(w.now)
        products: dict[str, dict[str, Any]] = {}
        bins: defaultdict[str, dict[str, Any]] = defaultdict(dict)
        for key in self._products({"warehouse_id": job["warehouse_id"]}):
            prod = w.shiphero_products[key]
            if job["_updated_from"] and prod["updated_at"] < job["_updated_from"]:
                continue
            view = self._product(key)  # the same figures (and unit view) as warehouse_products
            if job["_has_inventory"] and view["on_hand"] <= 0:
                continue
            sku, warehouse = key
            entry = {
                "warehouse_id": warehouse,
                "on_hand": view["on_hand"],
                "allocated": view["allocated"],
                "backorder": view["backorder"],
                "available": view["available"],
                "reserve": view["reserve_inventory"],
                "non_sellable": view["non_sellable_quantity"],
                "item_bins": {
                    base64.b64encode(f"Bin:{prod['legacy_id']}".encode()).decode(): {
                        "location_id": base64.b64encode(f"Bin:{prod['legacy_id']}".encode()).decode(),
                        "location_name": view["inventory_bin"],
                        "lot_id": "",
                        "lot_name": "",
                        "expiration_date": "",
                        "sellable": True,
                        "quantity": view["on_hand"],
                    }
                },
            }
            if job["new_format"]:
                entry.update(sell_ahead=0, qty_in_totes=0)
            bins[sku][warehouse] = entry
            if sku not in products:
                products[sku] = {"sku": sku, "account_id": ACCOUNT_ID, "vendors": {}}
                if job["new_format"]:
                    products[sku].update(
                        barcode="", thumbnail=None, large_thumbnail=None,
                        dimensions={"height": "0.00", "width": "0.00", "length": "0.00", "weight": "0.00"},
                    )
        for sku, product in products.items():
            product["warehouse_products"] = bins[sku]
        return {
            "snapshot_id": job["snapshot_id"],
            "warehouse_id": job["warehouse_id"],
            "customer_account_id": job["customer_account_id"],
            "snapshot_started_at": taken,
            "snapshot_finished_at": taken,
            "products": {ACCOUNT_ID: products} if job["new_format"] else products,
        }

    def _download(self, req: Request) -> Response:
        """`GET /snapshots/<id>.json?X-Amz-...`: the file, as an S3 pre-signed link answers (XML errors)."""
        sid = req.path.removeprefix("/snapshots/").removesuffix(".json")
        job = self.snapshots.get(sid)
        if job is not None:
            self._advance(job)
        if job is None or job["_file"] is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        date, signature = req.arg("X-Amz-Date") or "", req.arg("X-Amz-Signature") or ""
        expected = hmac.new(self._sign_key, f"{sid}|{date}".encode(), "sha256").hexdigest()
        if not hmac.compare_digest(signature, expected):
            return _s3_error(403, "SignatureDoesNotMatch",
                             "The request signature we calculated does not match the signature you provided.")
        if self.world.now > job["snapshot_expiration"]:
            return _s3_error(403, "AccessDenied", "Request has expired")
        return Response(200, job["_file"], {"Content-Type": "application/json"}, page=True)


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>SIMULATED</RequestId></Error>").encode()
    return Response(status, body, {"Content-Type": "application/xml"})
