"""Shared HTTP for every channel client: transport safety, retries, JSON parsing, typed errors, redaction.

Owns
- `ChannelHttp`, an `httpx.Client` wrapper: `https://` only (loopback excepted, for the simulator),
  TLS verification always on, timeouts (connect 5 s, read 30 s), retries with exponential backoff and
  full jitter on 429 / 5xx / timeouts / dropped connections / cut bodies (never on other 4xx), honouring
  `Retry-After` (seconds or HTTP-date) within a total retry budget;
- the error types (`ChannelError` and its subclasses) every client raises;
- `parse_json`, the only JSON reader: floats become `Decimal`, NaN/Infinity, duplicate keys, invalid
  UTF-8 and absurd nesting are refused, so a cut or corrupt body is never taken for a page;
- `Redactor`, the single point through which every log line and exception text passes, so a token
  never leaves this module;
- `CostBudget` and `Pacer`, the two client-side throttles (a points bucket and a fixed request rate).

Writes tell the wrapper whether a resend is harmless (`KEYED_WRITE` vs `UNKEYED_WRITE`): a write without an idempotency
key that may have reached the server is never resent; it raises `OutcomeUnknown` so the caller can
settle it by reading the level back (reliability.md F-KILL-PUSH).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
READ, KEYED_WRITE, UNKEYED_WRITE = "read", "keyed_write", "unkeyed_write"
# Nesting deeper than any channel payload; deeper input is refused instead of exhausting the stack.
MAX_JSON_DEPTH = 64


class ChannelError(Exception):
    """A channel API call failed; `str()` says which channel, what happened and what to do.

    Every message passes the process-wide redaction (every token a client was built with) before
    it is stored, so exception text is safe to log wherever it is raised."""

    def __init__(self, channel: str, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(_LOG_REDACTION.redactor(f"{channel}: {message}"))
        self.channel = channel
        self.status = status
        self.body = body


class ConfigError(ChannelError, ValueError):
    """The client was constructed with an unsafe or invalid setting (plain http, verify=False …)."""


class AuthError(ChannelError):
    """401/403: the token is missing, expired or lacks a scope. Retrying will not help."""


class RequestRejected(ChannelError):
    """Any other 4xx: the channel refused this request as invalid. Retrying will not help."""


class RateLimited(ChannelError):
    """Throttled beyond the retry budget; `retry_after` is the channel's own hint, when it gave one.

    Nothing was applied: the caller stops cleanly (cursor committed) and resumes next run."""

    def __init__(self, channel: str, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(channel, message, **kw)
        self.retry_after = retry_after


class TransientError(ChannelError):
    """5xx, timeouts or dropped connections outlasted the retry budget."""


class OutcomeUnknown(TransientError):
    """The request may have been applied by the channel but no usable answer came back."""


class BadResponse(ChannelError):
    """The channel answered 2xx with a body that is not the JSON it promised (cut, NaN, wrong shape)."""


class Redactor:
    """Removes secrets from text: the known token values and anything shaped like a credential."""

    _PATTERNS = (
        re.compile(r"(?i)(authorization|x-shopify-access-token|x-amz-access-token)(['\"]?\s*[:=]\s*['\"]?)([^'\"\s,}]+(?: [^'\"\s,}]+)?)"),
        re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=|-]+"),
        re.compile(r"(?i)([?&](?:access_token|token|api_key|client_secret|password)=)[^&\s'\"]+"),
    )

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is removed whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[REDACTED]")
        text = self._PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]", text)
        text = self._PATTERNS[1].sub(lambda m: f"{m.group(1)} [REDACTED]", text)
        return self._PATTERNS[2].sub(lambda m: f"{m.group(1)}[REDACTED]", text)


class _LogRedaction(logging.Filter):
    """The registry of every token a client was built with, and the filter that redacts them from
    the HTTP libraries' own loggers (httpx logs each request URL at INFO). Attached to the loggers
    when the first client is built, never at import."""

    LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", __name__)

    def __init__(self) -> None:
        super().__init__()
        self.redactor = Redactor()
        self.attached = False

    def add(self, secrets: Iterable[str]) -> None:
        self.redactor = Redactor([*self.redactor.secrets, *secrets])
        if not self.attached:
            for name in self.LOGGERS:
                logging.getLogger(name).addFilter(self)
            self.attached = True

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redactor(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_LOG_REDACTION = _LogRedaction()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate object key {dup!r}")
    return obj


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            break
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def parse_json(body: bytes) -> Any:
    """Parse a response body strictly; raise `ValueError` saying why it is not acceptable.

    Floats become `Decimal` (money and quantities never pass through float; `1e309` stays finite),
    `NaN`/`Infinity` and duplicate keys are refused, and so are integers too long for Python."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    value = json.loads(
        text, parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
    )
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def parse_timestamp(value: Any, *, assume_utc: bool = False) -> datetime | None:
    """RFC 3339 text → aware UTC datetime; None for null. A missing zone is an error unless the
    channel's contract says its timestamps are UTC (`assume_utc`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be a string, got {type(value).__name__}")
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        if not assume_utc:
            raise ValueError(f"timestamp {value!r} has no time zone")
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def format_timestamp(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per request and the total seconds one request may spend waiting."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    budget_seconds: float = 120.0


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: httpx.Headers
    data: Any


# A channel-specific look at a 2xx body that is really a throttle (Shopify `THROTTLED` in a 200):
# returns the seconds to wait, or None when the response is a real answer.
ThrottleCheck = Callable[[ApiResponse], float | None]


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, maybe_applied: bool, retry_after: float | None = None,
                 throttled: bool = False, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_applied = maybe_applied
        self.retry_after = retry_after
        self.throttled = throttled
        self.status = status


class ChannelHttp:
    """One channel's HTTP session. Build it with the channel's auth headers; they are never logged."""

    def __init__(
        self,
        channel: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        secrets: Iterable[str],
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        verify: Any = True,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.channel = channel
        secrets = list(secrets)
        self.redact = Redactor(secrets)
        _LOG_REDACTION.add(secrets)
        parts = urlsplit(base_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(channel, f"base URL {self.redact(base_url)!r} is not an absolute http(s) URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigError(channel, f"base URL {self.redact(base_url)!r} must use https:// (plain http "
                                       "is allowed only for loopback hosts such as the simulator)")
        if not verify:
            raise ConfigError(channel, "TLS verification cannot be disabled; pass a CA bundle path or "
                                       "ssl.SSLContext to trust a private certificate")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter needs no cryptographic randomness
        self._now = now
        self._client = httpx.Client(
            base_url=self.base_url, headers=dict(headers), timeout=timeout, verify=verify,
            transport=transport, follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ChannelHttp(channel={self.channel!r}, base_url={self.redact(self.base_url)!r})"

    def close(self) -> None:
        self._client.close()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        mode: str = READ,
        throttle: ThrottleCheck | None = None,
        what: str = "",
        throttle_budget: list[float] | None = None,
    ) -> ApiResponse:
        """Send one request, retrying what is worth retrying; return the parsed 2xx answer.

        `mode` is `READ`, `KEYED_WRITE` (an idempotency key makes a resend harmless) or
        `UNKEYED_WRITE`, which resends only what certainly did not reach the channel (connect
        failures, 429) and otherwise raises `OutcomeUnknown`. Writes that run out of retries after
        an attempt that may have landed raise `OutcomeUnknown` too. `throttle_budget` ([seconds],
        spent in place) caps the waits for a throttling channel: a longer one raises `RateLimited`
        at once (a reader that would rather stop and resume on its next run)."""
        if mode not in (READ, KEYED_WRITE, UNKEYED_WRITE):
            raise ValueError(f"unknown request mode {mode!r}")
        label = self.redact(what or f"{method} {path}")
        waited = 0.0
        maybe_applied = False
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return self._attempt(method, path, json_body, params, headers, throttle, label)
            except _Retry as r:
                maybe_applied = maybe_applied or (r.maybe_applied and mode != READ)
                if r.maybe_applied and mode == UNKEYED_WRITE:
                    raise OutcomeUnknown(self.channel, f"{label}: {r.reason}; the write may have been "
                                         "applied, read the level back before retrying", status=r.status) from None
                delay = self._backoff(attempt)
                if r.retry_after is not None:
                    delay = max(delay, r.retry_after)
                if r.throttled and throttle_budget is not None:
                    if delay > throttle_budget[0]:
                        raise RateLimited(self.channel, f"{label}: throttled; the next attempt is {delay:.1f}s away, "
                                          f"{throttle_budget[0]:.1f}s of waiting allowed", retry_after=delay,
                                          status=r.status) from None
                    throttle_budget[0] -= delay
                last = attempt == self.retry.max_attempts
                if last or waited + delay > self.retry.budget_seconds:
                    raise self._exhausted(label, r, attempt, maybe_applied) from None
                logger.warning("%s", self.redact(
                    f"{self.channel}: {label} attempt {attempt} failed ({r.reason}); retrying in {delay:.2f}s"))
                self.sleep(delay)
                waited += delay
        raise AssertionError("unreachable: the loop returns or raises")

    def _exhausted(self, label: str, r: _Retry, attempts: int, maybe_applied: bool) -> ChannelError:
        if maybe_applied:
            return OutcomeUnknown(self.channel, f"{label}: {r.reason} after {attempts} attempt(s); an earlier "
                                  "attempt may have been applied, read the level back", status=r.status)
        if r.throttled:
            return RateLimited(self.channel, f"{label}: still throttled after {attempts} attempt(s) and the "
                               "retry budget; resume on the next run", retry_after=r.retry_after, status=r.status)
        if r.reason.startswith("unparseable"):
            return BadResponse(self.channel, f"{label}: {r.reason} on {attempts} attempt(s)", status=r.status)
        return TransientError(self.channel, f"{label}: {r.reason} after {attempts} attempt(s); the channel "
                              "looks unavailable, the next run resumes from the committed cursor", status=r.status)

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^n)].
        return self._rng.uniform(0, min(self.retry.backoff_cap, self.retry.backoff_base * 2 ** (attempt - 1)))

    def _attempt(self, method: str, path: str, json_body: Any, params: Mapping[str, Any] | None,
                 headers: Mapping[str, str] | None, throttle: ThrottleCheck | None, label: str) -> ApiResponse:
        try:
            resp = self._client.request(method, path, json=json_body, params=params, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Retry(f"could not connect ({type(exc).__name__})", maybe_applied=False) from None
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})", maybe_applied=True) from None
        except httpx.TransportError as exc:
            # Reset mid-body, protocol errors: the request may have been processed.
            raise _Retry(f"connection dropped ({type(exc).__name__})", maybe_applied=True) from None

        status = resp.status_code
        if status == 429:
            raise _Retry("HTTP 429", maybe_applied=False, throttled=True, status=status,
                         retry_after=self.retry_after(resp.headers.get("retry-after")))
        if status >= 500:
            raise _Retry(f"HTTP {status}", maybe_applied=True, status=status,
                         retry_after=self.retry_after(resp.headers.get("retry-after")))
        body = self._parse(resp)
        if status in (401, 403):
            raise AuthError(self.channel, f"{label}: HTTP {status}: the access token was refused; check the "
                            "token's validity and scopes", status=status, body=self._redact_body(body))
        if status >= 400:
            raise RequestRejected(self.channel, f"{label}: HTTP {status}: {self._summary(body)}",
                                  status=status, body=self._redact_body(body))
        if status >= 300:
            raise RequestRejected(self.channel, f"{label}: unexpected redirect HTTP {status}", status=status)
        if isinstance(body, _Unparseable):
            raise _Retry(f"unparseable body ({body.reason})", maybe_applied=True, status=status)
        answer = ApiResponse(status, resp.headers, body)
        wait = throttle(answer) if throttle else None
        if wait is not None:
            raise _Retry("throttled by the channel", maybe_applied=False, throttled=True,
                         retry_after=wait, status=status)
        return answer

    def _parse(self, resp: httpx.Response) -> Any:
        if not resp.content:
            return None
        try:
            return parse_json(resp.content)
        except (ValueError, RecursionError) as exc:
            return _Unparseable(self.redact(str(exc))[:200])

    def retry_after(self, value: str | None) -> float | None:
        """Seconds to wait from a `Retry-After` header (delta seconds or an HTTP-date), if any."""
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - self._now()).total_seconds())

    def _summary(self, body: Any) -> str:
        if isinstance(body, _Unparseable) or body is None:
            return "no readable error body"
        return self.redact(json.dumps(body, default=str))[:500]

    def _redact_body(self, body: Any) -> Any:
        if isinstance(body, _Unparseable) or body is None:
            return None
        return json.loads(self.redact(json.dumps(body, default=str)))


@dataclass(frozen=True)
class _Unparseable:
    reason: str


class CostBudget:
    """A points bucket (Shopify query cost, ShipHero credits): wait until a request's cost fits.

    The channel reports the state (`observe`) where it can; otherwise the client charges its own
    spending (`charge`) and the bucket refills at `restore_rate` per second."""

    def __init__(self, maximum: float, restore_rate: float, *, sleep: Callable[[float], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = maximum
        self.restore_rate = restore_rate
        self.available = maximum
        self._sleep = sleep
        self._clock = clock
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.available = min(self.maximum, self.available + (now - self._at) * self.restore_rate)
        self._at = now

    def observe(self, available: float, maximum: float | None = None, restore_rate: float | None = None) -> None:
        self.available = float(available)
        self.maximum = float(maximum) if maximum is not None else self.maximum
        self.restore_rate = float(restore_rate) if restore_rate else self.restore_rate
        self._at = self._clock()

    def charge(self, cost: float) -> None:
        self._refill()
        self.available -= cost

    def seconds_until(self, cost: float) -> float:
        self._refill()
        missing = min(cost, self.maximum) - self.available
        return max(0.0, missing / self.restore_rate) if self.restore_rate > 0 else 0.0

    def wait_for(self, cost: float) -> float:
        wait = self.seconds_until(cost)
        if wait > 0:
            self._sleep(wait)
            self._refill()
        return wait


class Pacer:
    """Keeps one operation at or below `rate` requests per second (Amazon's per-operation buckets)."""

    def __init__(self, rate: float, *, sleep: Callable[[float], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._sleep = sleep
        self._clock = clock
        self._next = 0.0

    def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + 1.0 / self.rate
