"""Webhook intake: Shopify `inventory_levels/update` and Square `inventory.count.updated` deliveries.

Owns signature verification (on the RAW bytes, before any parsing, with `hmac.compare_digest`), the
small HTTP endpoint, and recording accepted deliveries once each in `ops.webhook_events` (deduped on
the channel's event id). A delivery only *triggers* extraction: `webhook_events_sensor` turns new
rows into extraction runs; nothing here touches the ledger (reliability.md §3, F-WEBHOOK). Forged or
unsigned deliveries get 401 and are logged without their body. Secrets are passed in by the caller
(the CLI takes them from `Settings.secrets`, i.e. SHOPIFY_WEBHOOK_SECRET, SQUARE_WEBHOOK_SIGNATURE_KEY).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

logger = logging.getLogger(__name__)

MAX_BODY = 1_000_000
SHOPIFY_PATH = "/webhooks/shopify"
SQUARE_PATH = "/webhooks/square"
SHOPIFY_TOPICS = {"inventory_levels/update"}
SQUARE_TYPES = {"inventory.count.updated"}


def _sign(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def shopify_signature(secret: str, raw_body: bytes) -> str:
    """What Shopify sends in X-Shopify-Hmac-SHA256: base64 HMAC-SHA256 of the raw body."""
    return _sign(secret.encode(), raw_body)


def square_signature(signature_key: str, notification_url: str, raw_body: bytes) -> str:
    """What Square sends in x-square-hmacsha256-signature: base64 HMAC-SHA256 of URL + raw body."""
    return _sign(signature_key.encode(), notification_url.encode() + raw_body)


def _matches(expected: Sequence[str], header: str | None) -> bool:
    if not header:
        return False
    given = header.strip().encode()
    # Compare against every accepted secret (old and new during a rotation), never short-circuiting on `==`.
    return any(hmac.compare_digest(e.encode(), given) for e in expected)


def verify_shopify(secrets: Sequence[str], raw_body: bytes, header: str | None) -> bool:
    secrets = [s for s in secrets if s]
    return bool(secrets) and _matches([shopify_signature(s, raw_body) for s in secrets], header)


def verify_square(keys: Sequence[str], notification_url: str, raw_body: bytes, header: str | None) -> bool:
    keys = [k for k in keys if k]
    return bool(keys) and _matches([square_signature(k, notification_url, raw_body) for k in keys], header)


@dataclass(frozen=True)
class WebhookConfig:
    """Where deliveries are recorded and how they are verified.

    `connect()` returns a connection as a role that may insert into `ops.webhook_events` (the loader).
    `square_notification_url` must be byte for byte the URL registered with Square."""

    connect: Callable[[], psycopg.Connection]
    shopify_secrets: tuple[str, ...] = ()
    square_signature_keys: tuple[str, ...] = ()
    square_notification_url: str = ""


def record_event(conn: psycopg.Connection, channel: str, event_id: str, topic: str, payload) -> bool:
    """Record one delivery; False when this event id was recorded before (a duplicate delivery)."""
    with conn.transaction():
        row = conn.execute(
            """insert into ops.webhook_events (channel, event_id, topic, payload) values (%s, %s, %s, %s)
               on conflict (channel, event_id) do nothing returning webhook_event_id""",
            (channel, event_id, topic, psycopg.types.json.Jsonb(payload))).fetchone()
    return row is not None


def handle_delivery(config: WebhookConfig, path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, dict]:
    """The whole intake decision for one request: (HTTP status, JSON answer). Headers lower-cased."""
    if path == SHOPIFY_PATH:
        if not verify_shopify(config.shopify_secrets, raw_body, headers.get("x-shopify-hmac-sha256")):
            logger.warning("webhook rejected: shopify signature missing or invalid (%d bytes)", len(raw_body))
            return 401, {"error": "invalid signature"}
        channel = "shopify"
        topic = headers.get("x-shopify-topic") or "inventory_levels/update"
        event_id = headers.get("x-shopify-event-id") or headers.get("x-shopify-webhook-id")
    elif path == SQUARE_PATH:
        if not verify_square(config.square_signature_keys, config.square_notification_url, raw_body,
                             headers.get("x-square-hmacsha256-signature")):
            logger.warning("webhook rejected: square signature missing or invalid (%d bytes)", len(raw_body))
            return 401, {"error": "invalid signature"}
        channel, topic, event_id = "square", None, None
    else:
        return 404, {"error": "unknown webhook path"}
    try:
        payload = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        return 400, {"error": "body is not JSON"}
    if channel == "square":
        if not isinstance(payload, dict):
            return 400, {"error": "body is not a JSON object"}
        topic, event_id = str(payload.get("type") or ""), payload.get("event_id")
    if not event_id:
        return 400, {"error": "delivery has no event id"}
    if topic not in (SHOPIFY_TOPICS if channel == "shopify" else SQUARE_TYPES):
        return 200, {"status": "ignored", "topic": topic}
    with config.connect() as conn:
        conn.autocommit = True
        fresh = record_event(conn, channel, str(event_id), topic, payload)
    return 200, {"status": "accepted" if fresh else "duplicate"}


def make_webhook_server(config: WebhookConfig, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A ThreadingHTTPServer for the intake (not started). `server.server_address` has the port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - stdlib signature; never log bodies
            logger.info("webhook %s", format % args)

        def do_POST(self):  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                status, answer = 413, {"error": "body too large"}
                self.close_connection = True
            else:
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, answer = handle_delivery(config, self.path.split("?", 1)[0], headers, raw)
                except psycopg.Error as exc:
                    logger.error("webhook not recorded: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    status, answer = 503, {"error": "not recorded; retry"}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def start_webhook_server(config: WebhookConfig, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve in a daemon thread (tests); stop with `server.shutdown(); server.server_close()`."""
    server = make_webhook_server(config, host, port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def serve_webhooks(wh, settings, host: str = "127.0.0.1", port: int = 8787,
                   square_notification_url: str | None = None) -> int:
    """Serve the intake in the foreground until Ctrl-C. Secrets come from `settings.secrets`."""
    shopify = settings.secrets.get("SHOPIFY_WEBHOOK_SECRET")
    square = settings.secrets.get("SQUARE_WEBHOOK_SIGNATURE_KEY")
    if not shopify and not square:
        raise RuntimeError("set SHOPIFY_WEBHOOK_SECRET and/or SQUARE_WEBHOOK_SIGNATURE_KEY to accept webhooks")
    url = square_notification_url or f"http://{host}:{port}{SQUARE_PATH}"
    config = WebhookConfig(lambda: wh.connect("loader"), (shopify,) if shopify else (),
                           (square,) if square else (), url)
    server = make_webhook_server(config, host, port)
    print(f"webhooks: POST http://{host}:{server.server_address[1]}{SHOPIFY_PATH} and {SQUARE_PATH} "
          f"(square notification URL {url}); Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
