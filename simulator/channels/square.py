"""Square Inventory API v2 over the shared world (channel-apis.md §2).

`POST /v2/inventory/counts/batch-retrieve` (levels), `/changes/batch-retrieve` (history, ascending
`occurred_at`, filtered on `created_at` by `updated_after`/`updated_before`) and
`/changes/batch-create` (writes with a required `idempotency_key`).  Quantities are decimal strings,
errors `{"errors": [{category, code, detail, field}]}`, throttling a plain 429 `RATE_LIMITED`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from ..faults import page_bounds
from ..world import World, iso, parse_ts
from .base import BadRequest, ChannelApp, Request, Response

DEFAULT_VERSION = "2025-10-16"
ADJUSTMENTS = {
    ("NONE", "IN_STOCK"): 1,
    ("IN_STOCK", "NONE"): -1,
    ("IN_STOCK", "WASTE"): -1,
    ("IN_STOCK", "SOLD"): -1,
    ("SOLD", "IN_STOCK"): 1,
    ("RETURNED_BY_CUSTOMER", "IN_STOCK"): 1,
}
MAX_CHANGES = 100


def _err(category: str, code: str, detail: str, field: str | None = None) -> dict[str, str]:
    return {"category": category, "code": code, "detail": detail, **({"field": field} if field else {})}


def _qty(value: float) -> str:
    """Square prints quantities as decimal strings without trailing zeros."""
    d = Decimal(str(value)).normalize()
    return f"{d:f}"


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class SquareApp(ChannelApp):
    name = "square"

    def __init__(
        self, world: World, token: str | None = None, rate: float = 50.0, burst: float = 100.0
    ) -> None:
        super().__init__(world, token)
        self.bucket = TokenBucket(rate, burst)
        self.idempotency: dict[str, tuple[str, dict[str, Any]]] = {}

    # -- shapes ---------------------------------------------------------------------------------
    def unauthorized(self, req: Request) -> Response:
        return Response(
            401,
            {
                "errors": [
                    _err("AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized.")
                ]
            },
        )

    def server_error(self, status: int) -> Response:
        code = "SERVICE_UNAVAILABLE" if status == 503 else "INTERNAL_SERVER_ERROR"
        return Response(status, {"errors": [_err("API_ERROR", code, "An internal error has occurred.")]})

    def throttled(self, retry_after: float | None) -> Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return Response(
            429,
            {"errors": [_err("RATE_LIMIT_ERROR", "RATE_LIMITED", "This request was rate limited.")]},
            headers,
        )

    def bad_request(self, exc: BadRequest) -> Response:
        return Response(
            exc.status,
            {
                "errors": [
                    _err(
                        "INVALID_REQUEST_ERROR",
                        exc.extra.get("code", "BAD_REQUEST"),
                        exc.message,
                        exc.extra.get("field"),
                    )
                ]
            },
        )

    def decorate(self, req: Request, resp: Response) -> None:
        resp.headers["Square-Version"] = req.header("square-version") or DEFAULT_VERSION

    # -- routing --------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        routes = {
            "/v2/inventory/counts/batch-retrieve": self._counts,
            "/v2/inventory/changes/batch-retrieve": self._changes,
            "/v2/inventory/changes/batch-create": self._create,
        }
        fn = routes.get(req.path)
        if fn is None or req.method != "POST":
            return Response(
                404,
                {
                    "errors": [
                        _err(
                            "INVALID_REQUEST_ERROR",
                            "NOT_FOUND",
                            f"API endpoint for URL path `{req.path}` and HTTP method `{req.method}` is not found.",
                        )
                    ]
                },
            )
        if not self.bucket.take():
            return self.throttled(None)
        body = req.json() or {}
        if not isinstance(body, dict):
            raise BadRequest("Expected a JSON object body.")
        return fn(body)

    def _limit(self, body: dict[str, Any], default: int) -> int:
        limit = body.get("limit", default)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise BadRequest("`limit` must be between 1 and 1000.", code="INVALID_VALUE", field="limit")
        return limit

    @staticmethod
    def _fingerprint(body: dict[str, Any]) -> str:
        return hashlib.sha256(
            json.dumps(
                {k: v for k, v in body.items() if k not in ("cursor", "limit")}, sort_keys=True
            ).encode()
        ).hexdigest()[:12]

    def _decode_cursor(self, body: dict[str, Any]) -> Any:
        cursor = body.get("cursor")
        if not cursor:
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor))
            if data["f"] != self._fingerprint(body):
                raise ValueError
            return data["p"]
        except (ValueError, KeyError, TypeError):
            raise BadRequest(
                "The cursor is invalid for this request.", code="INVALID_CURSOR", field="cursor"
            ) from None

    def _encode_cursor(self, body: dict[str, Any], position: Any) -> str:
        raw = json.dumps({"f": self._fingerprint(body), "p": position}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    def _ts(self, body: dict[str, Any], name: str):
        if body.get(name) is None:
            return None
        try:
            return parse_ts(body[name])
        except (TypeError, ValueError):
            raise BadRequest(
                f"`{name}` must be an RFC 3339 timestamp.", code="INVALID_VALUE", field=name
            ) from None

    # -- reads ----------------------------------------------------------------------------------
    def _counts(self, body: dict[str, Any]) -> Response:
        w = self.world
        ids, locs = set(body.get("catalog_object_ids") or []), set(body.get("location_ids") or [])
        states = set(body.get("states") or []) - {"NONE", "SOLD", "UNLINKED_RETURN"}
        after = self._ts(body, "updated_after")
        limit = self._limit(body, 1000)
        rows = []
        for lst in w.catalog.listings_for(self.name):
            if (ids and lst.channel_sku not in ids) or (locs and lst.channel_location not in locs):
                continue
            cnt = w.square_counts[(lst.channel_sku, lst.channel_location)]
            if after and cnt["calculated_at"] <= after:
                continue
            for state in ("IN_STOCK", "WASTE"):
                if (states and state not in states) or (not states and state == "WASTE" and not cnt["WASTE"]):
                    continue
                rows.append((cnt["calculated_at"], lst, state, cnt[state]))
        rows.sort(key=lambda r: (-r[0].timestamp(), r[1].channel_sku, r[1].channel_location, r[2]))
        start = self._decode_cursor(body) or 0
        end, has_next = page_bounds(self.plan, w.fault_rng[self.name], start, limit, len(rows))
        counts = [
            {
                "catalog_object_id": lst.channel_sku,
                "catalog_object_type": "ITEM_VARIATION",
                "state": state,
                "location_id": lst.channel_location,
                "quantity": _qty(w.uom_view(self.name, lst.sku, q)),
                "calculated_at": iso(at),
                "is_estimated": False,
            }
            for at, lst, state, q in rows[start:end]
        ]
        out: dict[str, Any] = {"counts": counts}
        if has_next:
            out["cursor"] = self._encode_cursor(body, end)
        return Response(200, out, page=True)

    def _public_change(self, change: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in change.items() if not k.startswith("_")}
        sub_key = out["type"].lower()
        sub = dict(out[sub_key])
        lst = self.world.listing(self.name, sub["catalog_object_id"], sub["location_id"])
        sub["quantity"] = _qty(self.world.uom_view(self.name, lst.sku, Decimal(sub["quantity"])))
        out[sub_key] = sub
        return out

    def _changes(self, body: dict[str, Any]) -> Response:
        w = self.world
        types = body.get("types") or ["PHYSICAL_COUNT", "ADJUSTMENT"]
        if "TRANSFER" in types or set(types) - {"PHYSICAL_COUNT", "ADJUSTMENT"}:
            raise BadRequest(
                "`types` may only contain PHYSICAL_COUNT and ADJUSTMENT.", code="INVALID_VALUE", field="types"
            )
        ids, locs = set(body.get("catalog_object_ids") or []), set(body.get("location_ids") or [])
        states = set(body.get("states") or [])
        after, before = self._ts(body, "updated_after"), self._ts(body, "updated_before")
        limit = self._limit(body, 100)
        selected = []
        for c in w.square_changes:
            sub = c[c["type"].lower()]
            if c["_hidden"] or c["type"] not in types:
                continue
            if (ids and sub["catalog_object_id"] not in ids) or (locs and sub["location_id"] not in locs):
                continue
            if states and c["type"] == "ADJUSTMENT" and not {sub["from_state"], sub["to_state"]} & states:
                continue
            if (after and c["_created"] <= after) or (before and c["_created"] > before):
                continue
            selected.append(c)
        selected.sort(key=lambda c: (c["_occurred"], c[c["type"].lower()]["id"]))
        pos = self._decode_cursor(body)
        start = 0
        if pos is not None:
            key = (parse_ts(pos[0]), pos[1])
            start = next(
                (i for i, c in enumerate(selected) if (c["_occurred"], c[c["type"].lower()]["id"]) > key),
                len(selected),
            )
        plan, rng = self.plan, w.fault_rng[self.name]
        end, has_next = page_bounds(plan, rng, start, limit, len(selected))
        page = list(selected[start:end])
        if page and plan.dup_rate and rng.random() < plan.dup_rate:
            # Re-send an event from this page or an earlier one (at-least-once delivery).
            page.insert(rng.randrange(len(page) + 1), selected[rng.randrange(0, end)])
        out: dict[str, Any] = {"changes": [self._public_change(c) for c in page]}
        if has_next and page:
            last = selected[end - 1]
            # Full precision, not the printed milliseconds: a client may write microseconds.
            position = [last["_occurred"].isoformat(), last[last["type"].lower()]["id"]]
            out["cursor"] = self._encode_cursor(body, position)
        return Response(200, out, page=True)

    # -- writes ---------------------------------------------------------------------------------
    def _create(self, body: dict[str, Any]) -> Response:
        key = body.get("idempotency_key")
        if not key:
            raise BadRequest("Field must be set", code="MISSING_REQUIRED_PARAMETER", field="idempotency_key")
        if not isinstance(key, str) or len(key) > 128:
            raise BadRequest(
                "Field must not be greater than 128 length", code="VALUE_TOO_LONG", field="idempotency_key"
            )
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if key in self.idempotency:
            seen, response = self.idempotency[key]
            self.world.record_request(self.name, key, False, {})
            if seen != fingerprint:
                raise BadRequest(
                    "The idempotency key can only be retried with the same request data.",
                    code="IDEMPOTENCY_KEY_REUSED",
                    field="idempotency_key",
                )
            return Response(200, response)
        changes = body.get("changes") or []
        if len(changes) > MAX_CHANGES:
            raise BadRequest(
                f"Array must contain at most {MAX_CHANGES} items.",
                code="ARRAY_LENGTH_TOO_LONG",
                field="changes",
            )
        plans = [self._validate(i, c) for i, c in enumerate(changes)]
        w = self.world
        created, touched = [], []
        ignore_unchanged = body.get("ignore_unchanged_counts", True)
        for kind, lst, sub, target in plans:
            cnt = w.square_counts[(lst.channel_sku, lst.channel_location)]
            current = w.uom_view(self.name, lst.sku, cnt["IN_STOCK"])
            new = target if kind == "PHYSICAL_COUNT" else current + target
            if kind == "PHYSICAL_COUNT" and ignore_unchanged and new == current:
                touched.append(lst)
                continue
            cnt["IN_STOCK"] = w.uom_unview(self.name, lst.sku, int(new))
            if sub.get("to_state") == "WASTE":
                cnt["WASTE"] += abs(target)
            cnt["calculated_at"] = w.now
            record = {
                **sub,
                "id": w.token(24),
                "catalog_object_type": "ITEM_VARIATION",
                "created_at": iso(w.now),
                "source": {
                    "product": "EXTERNAL_API",
                    "application_id": "sq0idp-inventory-sync",
                    "name": "inventory-sync",
                },
            }
            occurred = parse_ts(sub["occurred_at"])
            w.square_changes.append(
                {
                    "type": kind,
                    kind.lower(): record,
                    "_created": w.now,
                    "_occurred": occurred,
                    "_hidden": False,
                }
            )
            created.append({"type": kind, kind.lower(): record})
            touched.append(lst)
        counts = []
        for lst in dict.fromkeys(touched):
            cnt = w.square_counts[(lst.channel_sku, lst.channel_location)]
            counts.append(
                {
                    "catalog_object_id": lst.channel_sku,
                    "catalog_object_type": "ITEM_VARIATION",
                    "state": "IN_STOCK",
                    "location_id": lst.channel_location,
                    "quantity": _qty(w.uom_view(self.name, lst.sku, cnt["IN_STOCK"])),
                    "calculated_at": iso(cnt["calculated_at"]),
                }
            )
        response = {"counts": counts, "changes": created}
        self.idempotency[key] = (fingerprint, response)
        w.record_request(self.name, key, True, {"changes": len(changes), "created": len(created)})
        return Response(200, response, mutation=True)

    def _validate(self, i: int, change: dict[str, Any]):
        kind = change.get("type")
        if kind not in ("PHYSICAL_COUNT", "ADJUSTMENT"):
            raise BadRequest(
                f"Unsupported change type `{kind}`.", code="INVALID_ENUM_VALUE", field=f"changes[{i}].type"
            )
        prefix = f"changes[{i}].{kind.lower()}"
        sub = change.get(kind.lower())
        if not isinstance(sub, dict):
            raise BadRequest("Field must be set", code="MISSING_REQUIRED_PARAMETER", field=prefix)
        for name in ("catalog_object_id", "location_id", "quantity", "occurred_at"):
            if not sub.get(name):
                raise BadRequest(
                    "Field must be set", code="MISSING_REQUIRED_PARAMETER", field=f"{prefix}.{name}"
                )
        lst = self.world.listing(self.name, sub["catalog_object_id"], sub["location_id"])
        if lst is None:
            raise BadRequest(
                f"Object `{sub['catalog_object_id']}` at location `{sub['location_id']}` not found.",
                code="NOT_FOUND",
                field=f"{prefix}.catalog_object_id",
            )
        try:
            qty = Decimal(str(sub["quantity"]))
            parse_ts(sub["occurred_at"])
        except (InvalidOperation, ValueError):
            raise BadRequest("Invalid quantity or occurred_at.", code="INVALID_VALUE", field=prefix) from None
        if qty < 0 or qty != qty.to_integral_value():
            raise BadRequest(
                "Quantity must be a non-negative whole number for this item.",
                code="INVALID_VALUE",
                field=f"{prefix}.quantity",
            )
        if kind == "PHYSICAL_COUNT":
            if sub.get("state") != "IN_STOCK":
                raise BadRequest(
                    "Physical counts must use state IN_STOCK.", code="INVALID_VALUE", field=f"{prefix}.state"
                )
            return kind, lst, sub, int(qty)
        sign = ADJUSTMENTS.get((sub.get("from_state"), sub.get("to_state")))
        if sign is None:
            raise BadRequest(
                "Unsupported from_state/to_state combination.",
                code="INVALID_VALUE",
                field=f"{prefix}.to_state",
            )
        return kind, lst, sub, sign * int(qty)
