"""The contract every channel client fulfils: records, cursors, push targets and push results.

Owns the value types shared by all clients (`Record`, `MovementCursor`, `LevelTarget`, `PushResult`,
`Entity`) and `ChannelClient`, the base class that holds a client's `ChannelHttp` and turns
transport errors during a push into an honest `PushResult` outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal, NamedTuple

from .http import (
    BadResponse,
    ChannelError,
    ChannelHttp,
    OutcomeUnknown,
    RequestRejected,
    format_timestamp,
    parse_timestamp,
)

EntityKind = Literal["levels", "movements"]
# `accepted`: an asynchronous API took the write and applies it later (Amazon's ACCEPTED submission);
# it stays in flight and is settled by reading the level back once `settle_after` seconds have passed.
Outcome = Literal["applied", "stale", "rejected", "failed", "unknown", "accepted"]
OUTCOMES: tuple[Outcome, ...] = ("applied", "stale", "rejected", "failed", "unknown", "accepted")


class Record(NamedTuple):
    """One source record for `raw.<channel>_<entity>`: the API object exactly as returned (plus the
    context the API leaves implicit, e.g. the location a level was read for)."""

    source_id: str
    cursor_at: datetime | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Entity:
    """A raw table a client produces: `raw.<channel>_<name>`, filled by calling `reader`."""

    name: str
    kind: EntityKind
    reader: str  # method name: read_levels / read_movements / a channel-specific levels reader

    def table(self, channel: str) -> str:
        return f"{channel}_{self.name}"


@dataclass(frozen=True, order=True)
class MovementCursor:
    """Resume point of a change feed: the newest (timestamp, source id) committed so far, and when the
    read that reached it started (`read_at`).

    Compared as a tuple (at, id), so records sharing a timestamp are ordered by id; the reader re-reads
    a lookback window before it (at-least-once; the loader drops the duplicates on source id)."""

    at: datetime
    id: str = ""
    read_at: datetime | None = field(default=None, compare=False)

    def advanced(self, record: Record) -> MovementCursor:
        if record.cursor_at is None:
            return self
        return max(self, MovementCursor(record.cursor_at, record.source_id))

    def to_json(self) -> str:
        data = {"at": format_timestamp(self.at), "id": self.id}
        if self.read_at is not None:
            data["read_at"] = format_timestamp(self.read_at)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | None) -> MovementCursor | None:
        if not text:
            return None
        data = json.loads(text)
        read_at = parse_timestamp(data["read_at"]) if data.get("read_at") else None
        return cls(parse_timestamp(data["at"]), str(data.get("id", "")), read_at)

    def read_from(self, lookback: timedelta) -> datetime:
        """Where a re-read starts. `lookback` is how late a change may be reported: one reported after
        the last read started (`read_at`) is dated at most `lookback` before that, and everything older
        up to `at` was read then. So the window opens at `read_at - lookback`, or at `at` when that is
        earlier (a backlog being worked through: nothing to re-read); `at - lookback` when the start of
        the read is unknown. Change filters are strict (`updated_after`), so it opens one millisecond
        (the channels' timestamp precision) earlier: records that share the cursor's timestamp are
        always read again (≥), never skipped."""
        start = self.at - lookback if self.read_at is None else min(self.at, self.read_at - lookback)
        return start - timedelta(milliseconds=1)


class Backlog(NamedTuple):
    """Yielded last by a change-feed reader that stopped before the end of the feed and left the rest
    for the next read (e.g. a rate limit's wait budget was spent). Everything it yielded before is
    complete in feed order, so the cursor may move up to the newest of it."""

    reason: str


@dataclass(frozen=True)
class LevelTarget:
    """Where a level lives, in the channel's own identifiers (the `listings` channel_sku/location)."""

    channel_sku: str
    channel_location: str


@dataclass(frozen=True)
class PushResult:
    """What happened to one `set_level` call. `detail` is redacted; `observed_quantity` is the level
    the channel reported (after the write, or the differing level on `stale`), when known."""

    outcome: Outcome
    http_status: int | None = None
    detail: str = ""
    observed_quantity: Decimal | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")


def as_decimal(value: Any) -> Decimal | None:
    """A quantity from an API (int, Decimal from the parser, or a decimal string) as Decimal."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a quantity")
    if isinstance(value, (int, Decimal)):
        result = Decimal(value)
    elif isinstance(value, str):
        result = Decimal(value.strip())
    else:
        raise ValueError(f"a {type(value).__name__} is not a quantity")
    if not result.is_finite():
        raise ValueError(f"non-finite quantity {value!r}")
    return result


class ChannelClient:
    """Base of every channel client. Subclasses set `channel` and `entities` and implement the verbs
    `read_levels`, `read_level`, `set_level` (and `read_movements` where the API has history)."""

    channel: ClassVar[str]
    entities: ClassVar[tuple[Entity, ...]]

    http: ChannelHttp
    # Seconds an `accepted` write is given to apply before it is read back and settled.
    settle_after: float = 0.0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ChannelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.http.base_url!r})"

    def _guarded_push(self, push: Callable[[], PushResult]) -> PushResult:
        """Run a push; a channel failure becomes an outcome instead of an exception.

        A write that may have landed (no answer, or an answer we cannot read) is `unknown`; a refusal
        is `rejected`; anything that certainly stopped before the channel acted (auth, throttling,
        connection failures before sending) is `failed`."""
        try:
            return push()
        except (OutcomeUnknown, BadResponse) as exc:
            return PushResult("unknown", exc.status, str(exc))
        except RequestRejected as exc:
            return PushResult("rejected", exc.status, str(exc))
        except ChannelError as exc:
            return PushResult("failed", exc.status, str(exc))


def as_timedelta(value: timedelta | float) -> timedelta:
    """A duration from code (timedelta) or from the channel registry YAML (seconds)."""
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def integral(quantity: Decimal) -> int | None:
    """The quantity as int when it is a whole number (most channels count whole units)."""
    return int(quantity) if quantity == quantity.to_integral_value() else None


def connection(channel: str, conn: Any, name: str) -> dict[str, Any]:
    """A Relay connection (Shopify `nodes`, ShipHero `edges { node }`) with its nodes under `nodes`."""
    if isinstance(conn, dict) and not isinstance(conn.get("nodes"), list) and isinstance(conn.get("edges"), list):
        conn = {**conn, "nodes": [e.get("node") if isinstance(e, dict) else None for e in conn["edges"]]}
    if not isinstance(conn, dict) or not isinstance(conn.get("nodes"), list) \
            or not all(isinstance(n, dict) for n in conn["nodes"]):
        raise BadResponse(channel, f"{name} is not a connection of objects")
    return conn


def next_cursor(channel: str, conn: dict[str, Any], seen: set[str]) -> str | None:
    """The cursor of the next page, or None on the last; a repeated cursor would loop forever."""
    info = conn.get("pageInfo") or {}
    if not info.get("hasNextPage"):
        return None
    cursor = info.get("endCursor")
    if not cursor or cursor in seen:
        raise BadResponse(channel, f"pagination cursor {cursor!r} is missing or repeats")
    seen.add(cursor)
    return cursor
