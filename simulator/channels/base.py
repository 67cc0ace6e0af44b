"""HTTP plumbing shared by the channel simulators: routing, transport faults, control endpoints.

Each channel module subclasses `ChannelApp` and implements `handle`, its error shapes and its
`truth`.  A `ThreadingHTTPServer` per channel calls `ChannelApp.dispatch`, which
1. serves the test-only control endpoints (`/__truth`, `/__applied`, `/__faults`, `/__tick`,
   `/__hand_edit`) without auth or faults,
2. checks the channel's auth header (401 in the channel's shape),
3. applies transport faults in the channel's shapes (hang, latency, 5xx, spurious 429),
4. runs the channel's handler under `world.lock` (the world is one consistent store),
5. drops the connection after a mutation (`apply_then_drop`) or cuts a list page's JSON (`cut_json`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..faults import FaultPlan
from ..world import World


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: Any  # JSON-serialisable, or bytes
    headers: dict[str, str] = field(default_factory=dict)
    mutation: bool = False  # a write was applied: eligible for apply_then_drop
    page: bool = False  # a list page: eligible for cut_json


class BadRequest(Exception):
    """Raised by handlers for malformed input; rendered with the channel's error shape."""

    def __init__(self, message: str, status: int = 400, **extra: Any):
        super().__init__(message)
        self.message, self.status, self.extra = message, status, extra


class ChannelApp:
    name = "channel"

    def __init__(self, world: World, token: str | None = None) -> None:
        self.world = world
        env = f"INVENTORY_SYNC_SIM_{self.name.upper()}_TOKEN"
        self.token = token or os.environ.get(env) or f"sim-{self.name}-token"

    # -- to implement per channel -------------------------------------------------------------
    def authorized(self, req: Request) -> bool:
        return req.header("authorization") == f"Bearer {self.token}"

    def is_public(self, req: Request) -> bool:
        """Endpoints that need no token (token exchanges)."""
        return False

    def unauthorized(self, req: Request) -> Response:
        raise NotImplementedError

    def server_error(self, status: int) -> Response:
        raise NotImplementedError

    def throttled(self, retry_after: float | None) -> Response:
        raise NotImplementedError

    def bad_request(self, exc: BadRequest) -> Response:
        raise NotImplementedError

    def handle(self, req: Request) -> Response:
        raise NotImplementedError

    def truth(self) -> dict[str, Any]:
        """The channel's own current state, with the ground truth beside it."""
        w = self.world
        rows = []
        for lst in w.catalog.listings_for(self.name):
            rows.append(
                {
                    "channel_sku": lst.channel_sku,
                    "channel_location": lst.channel_location,
                    "sku": lst.sku,
                    "location": lst.location,
                    "channel_quantity": w.channel_level(lst),
                    "truth_on_hand": w.on_hand.get((lst.sku, lst.location), 0),
                }
            )
        return {"channel": self.name, "now": w.now.isoformat(), "levels": rows}

    def decorate(self, req: Request, resp: Response) -> None:
        """Headers every reply of this channel carries (request ids, rate-limit headers)."""

    # -- dispatch ---------------------------------------------------------------------------------
    @property
    def plan(self) -> FaultPlan:
        return self.world.faults[self.name]

    def _draw(self) -> float:
        with self.world.lock:
            return self.world.fault_rng[self.name].random()

    def dispatch(self, req: Request) -> Response | None:
        """Return the reply, or None to drop the connection without one."""
        if req.path.startswith("/__"):
            return self.control(req)
        if not self.is_public(req) and not self.authorized(req):
            resp = self.unauthorized(req)
            self.decorate(req, resp)
            return resp
        plan = self.plan
        if plan.hang_rate and self._draw() < plan.hang_rate:
            time.sleep(plan.hang_seconds)
        if plan.latency_ms:
            time.sleep(plan.latency_ms / 1000)
        for status, rate in sorted(plan.error_rate.items()):
            if self._draw() < rate:
                resp = self.server_error(status)
                self.decorate(req, resp)
                return resp
        if plan.throttle_rate and self._draw() < plan.throttle_rate:
            resp = self.throttled(plan.retry_after)
            self.decorate(req, resp)
            return resp
        try:
            with self.world.lock:
                resp = self.handle(req)
        except BadRequest as exc:
            resp = self.bad_request(exc)
        except json.JSONDecodeError as exc:
            resp = self.bad_request(BadRequest(f"Malformed JSON body: {exc.msg}"))
        self.decorate(req, resp)
        if resp.mutation and plan.apply_then_drop_rate and self._draw() < plan.apply_then_drop_rate:
            return None
        if resp.page and plan.truncate_page == "cut_json" and self._draw() < plan.truncate_rate:
            raw = json.dumps(resp.body).encode()
            resp.body = raw[: max(1, len(raw) // 2)]
        return resp

    def control(self, req: Request) -> Response:
        w = self.world
        with w.lock:
            if req.path == "/__truth":
                return Response(200, self.truth())
            if req.path == "/__applied":
                return Response(200, {k: vars(v) for k, v in w.applied[self.name].items()})
            if req.path == "/__faults" and req.method == "GET":
                return Response(200, self.plan.to_dict())
            if req.path == "/__faults" and req.method == "POST":
                try:
                    w.set_faults(self.name, FaultPlan.from_dict(req.json() or {}))
                except (TypeError, ValueError) as exc:
                    return Response(400, {"error": str(exc)})
                return Response(200, self.plan.to_dict())
            if req.path == "/__tick" and req.method == "POST":
                body = req.json() or {}
                moved = w.tick(int(body.get("n", 1)), body.get("seconds"))
                return Response(200, {"now": w.now.isoformat(), "movements": [m.row() for m in moved]})
            if req.path == "/__hand_edit" and req.method == "POST":
                body = req.json()
                w.hand_edit(self.name, body["channel_sku"], body["channel_location"], int(body["quantity"]))
                return Response(200, {"ok": True})
        return Response(404, {"error": f"unknown control endpoint {req.method} {req.path}"})


def request_id() -> str:
    return uuid.uuid4().hex


class _Handler(BaseHTTPRequestHandler):
    app: ChannelApp
    protocol_version = "HTTP/1.1"
    # Buffer the reply so headers and body leave in one segment (flushed by handle_one_request);
    # two small writes would stall keep-alive clients on Nagle + delayed ACK (~40 ms a request).
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: tests and the CLI print their own output."""

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            self.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        resp = self.app.dispatch(req)
        if resp is None:
            self.close_connection = True
            return
        raw = resp.body if isinstance(resp.body, bytes) else json.dumps(resp.body).encode()
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.headers.pop("Content-Type", "application/json"))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class ChannelServer:
    """One channel app on its own port, served from a daemon thread."""

    def __init__(self, app: ChannelApp, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type(f"{app.name.title()}Handler", (_Handler,), {"app": app})
        self.app = app
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # a hung request must not block shutdown
        # A short poll interval keeps shutdown() fast: tests start and stop five servers per test.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"sim-{app.name}",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ChannelServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
