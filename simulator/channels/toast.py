"""Toast Stock API over the shared world (pos-apis.md §1): the café/store STORE-03.

`GET /stock/v1/inventory` (only QUANTITY and OUT_OF_STOCK items), `POST /stock/v1/inventory/search`,
`PUT /stock/v1/inventory/update` (all-or-nothing; bare JSON arrays), `POST
/authentication/v1/authentication/login`.  Every stock call needs `Toast-Restaurant-External-ID`
naming the one restaurant location.  Fixed-window rate limit with `X-Toast-RateLimit-*` headers and
429 + `Retry-After` (seconds); errors in Toast's `ErrorMessage` shape.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
import uuid
from typing import Any

from ..world import World
from .base import BadRequest, ChannelApp, Request, Response

STATUSES = ("IN_STOCK", "QUANTITY", "OUT_OF_STOCK")


class ToastApp(ChannelApp):
    name = "toast"

    def __init__(
        self,
        world: World,
        token: str | None = None,
        rate_per_second: int = 20,
        client_secret: str | None = None,
    ) -> None:
        super().__init__(world, token)
        self.client_secret = (
            client_secret or os.environ.get("INVENTORY_SYNC_SIM_TOAST_CLIENT_SECRET") or "sim-toast-secret"
        )
        self.rate = rate_per_second
        self._window, self._used = int(time.time()), 0
        self._ids = random.Random(f"toast:{world.scenario.seed}")
        self.restaurant = world.catalog.toast_restaurant
        self._by_multi = {m: g for g, m in world.catalog.toast_multi_location.items()}

    # -- shapes ---------------------------------------------------------------------------------
    def _error(self, status: int, message: str, code: int | None = None, **extra: Any) -> Response:
        return Response(
            status,
            {
                "status": status,
                "code": code if code is not None else status * 100,
                "message": message,
                "messageKey": None,
                "fieldName": None,
                "link": None,
                "requestId": str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
                "developerMessage": None,
                "errors": [],
                **extra,
            },
        )

    def is_public(self, req: Request) -> bool:
        return req.path == "/authentication/v1/authentication/login"

    def unauthorized(self, req: Request) -> Response:
        return self._error(401, "Authentication failed: invalid or expired access token.", 10401)

    def server_error(self, status: int) -> Response:
        return self._error(status, "An internal error occurred. Please retry the request.", status * 100)

    def throttled(self, retry_after: float | None) -> Response:
        resp = self._error(429, "Rate limit exceeded.", 42900)
        if retry_after is not None:
            resp.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return resp

    def bad_request(self, exc: BadRequest) -> Response:
        return self._error(exc.status, exc.message, exc.extra.get("code"))

    def decorate(self, req: Request, resp: Response) -> None:
        resp.headers.setdefault("X-Toast-RateLimit-By", "ENDPOINT")
        resp.headers.setdefault("X-Toast-RateLimit-Remaining", str(max(0, self.rate - self._used)))
        resp.headers.setdefault("X-Toast-RateLimit-Reset", str(self._window + 1))

    # -- routing --------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.path == "/authentication/v1/authentication/login" and req.method == "POST":
            return self._login(req)
        routes = {
            ("GET", "/stock/v1/inventory"): self._list,
            ("POST", "/stock/v1/inventory/search"): self._search,
            ("PUT", "/stock/v1/inventory/update"): self._update,
        }
        fn = routes.get((req.method, req.path))
        if fn is None:
            return self._error(404, f"No route for {req.method} {req.path}", 40400)
        now = int(time.time())
        if now != self._window:
            self._window, self._used = now, 0
        if self._used >= self.rate:
            resp = self.throttled(1)
            resp.headers["X-Toast-RateLimit-Remaining"] = "0"
            return resp
        self._used += 1
        restaurant = req.header("toast-restaurant-external-id")
        if not restaurant:
            raise BadRequest("Missing required header Toast-Restaurant-External-ID.", code=10400)
        if restaurant != self.restaurant:
            return self._error(403, f"Access to restaurant {restaurant} is not allowed.", 10403)
        return fn(req)

    def _login(self, req: Request) -> Response:
        body = req.json() or {}
        if body.get("userAccessType") != "TOAST_MACHINE_CLIENT" or not body.get("clientId"):
            raise BadRequest("clientId, clientSecret and userAccessType TOAST_MACHINE_CLIENT are required.")
        if body.get("clientSecret") != self.client_secret:
            return self._error(401, "Invalid client credentials.", 10401)
        return Response(
            200,
            {
                "token": {
                    "tokenType": "Bearer",
                    "scope": "stock:read stock:write",
                    "expiresIn": 86400,
                    "accessToken": self.token,
                    "idToken": None,
                    "refreshToken": None,
                },
                "status": "SUCCESS",
            },
        )

    # -- stock ----------------------------------------------------------------------------------
    def _item(self, guid: str) -> dict[str, Any]:
        w = self.world
        item = w.toast_items[guid]
        lst = w.listing(self.name, guid, self.restaurant)
        qty = item["quantity"]
        return {
            "guid": guid,
            "itemGuidValidity": "VALID",
            "status": item["status"],
            "quantity": None if qty is None else float(w.uom_view(self.name, lst.sku, qty)),
            "multiLocationId": w.catalog.toast_multi_location[guid],
            "versionId": None,
        }

    def _list(self, req: Request) -> Response:
        status = req.arg("status")
        if status is not None and status not in ("QUANTITY", "OUT_OF_STOCK"):
            raise BadRequest("status must be QUANTITY or OUT_OF_STOCK.")
        wanted = (status,) if status else ("QUANTITY", "OUT_OF_STOCK")
        items = [
            self._item(g)
            for g in sorted(self.world.toast_items)
            if self.world.toast_items[g]["status"] in wanted
        ]
        return Response(200, items, page=True)

    def _search(self, req: Request) -> Response:
        body = req.json() or {}
        if not isinstance(body, dict):
            raise BadRequest("Body must be an InventorySearchRequest object.")
        guids = list(body.get("guids") or [])
        guids += [self._by_multi[m] for m in body.get("multiLocationIds") or [] if m in self._by_multi]
        out = [self._item(g) for g in dict.fromkeys(guids) if g in self.world.toast_items]
        return Response(200, out)

    def _update(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, list):
            raise BadRequest("Body must be a JSON array of MenuItemInventory.")
        w = self.world
        resolved, missing = [], []
        for i, entry in enumerate(body):
            if not isinstance(entry, dict):
                raise BadRequest(f"Item {i} must be an object.")
            guid = entry.get("guid") or self._by_multi.get(entry.get("multiLocationId") or "")
            if guid not in w.toast_items:
                missing.append(entry.get("guid") or entry.get("multiLocationId") or "")
                continue
            status, qty = entry.get("status"), entry.get("quantity")
            if status not in STATUSES:
                raise BadRequest(f"Item {i}: status must be one of {', '.join(STATUSES)}.")
            if status == "QUANTITY" and (
                not isinstance(qty, (int, float)) or isinstance(qty, bool) or qty <= 0
            ):
                raise BadRequest(
                    f"Item {i}: quantity must be a number greater than 0 when status is QUANTITY."
                )
            if status != "QUANTITY" and qty is not None:
                raise BadRequest(f"Item {i}: quantity must not be sent when status is {status}.")
            resolved.append((guid, status, qty))
        if missing:
            # The whole update fails when any item is unknown at this location.
            raise BadRequest(f"Menu items not found: {', '.join(missing)}", code=10404)
        for guid, status, qty in resolved:
            item = w.toast_items[guid]
            lst = w.listing(self.name, guid, self.restaurant)
            item["status"] = status
            item["quantity"] = float(w.uom_unview(self.name, lst.sku, qty)) if status == "QUANTITY" else None
            item["updated"] = w.now
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        w.record_request(self.name, f"sha256:{digest}", True, {"items": len(resolved)})
        return Response(200, [self._item(g) for g, _, _ in resolved], mutation=True)
