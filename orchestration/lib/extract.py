"""Extraction of one channel stream into its raw table, effectively exactly once (DESIGN §9, I-1, I-3).

A stream is (channel, entity). One extractor per stream at a time: a session advisory lock on a
dedicated connection (released when the connection closes, so a killed extractor never leaves it
held). Records are loaded in chunks; each chunk's rows and the advanced cursor commit in ONE
transaction, so a crash loses at most the uncommitted chunk and the next run re-reads it (the client
re-reads over a lookback with ≥, and `on conflict do nothing` drops the repeats). A cursor never moves
backwards: a source that reports older positions is read, never followed.

A change feed's cursor also says how far the feed is known to be read: `read_at` (when the read that
moved it started: the reader re-reads from there less its lookback) and `read_to` (everything the
channel had recorded up to then is in the raw table: `read_at` once a read ran to the end of the feed,
the newest record's time while a backlog is left for the next read). The drift mart reads `read_to`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from orchestration.lib import raw
from orchestration.lib.channels.base import Backlog

CHUNK = 2000


class StreamBusy(RuntimeError):
    """Another extractor holds this stream; this one stops without loading anything."""


@dataclass
class StreamResult:
    channel: str
    entity: str
    batch_id: str
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicting: int = 0
    chunks: int = 0
    cursor: Any = None
    backlog: str | None = None  # why a change-feed read stopped before the end of the feed

    def metadata(self) -> dict[str, Any]:
        return {"received": self.received, "inserted": self.inserted, "duplicates": self.duplicates,
                "conflicting_duplicates": self.conflicting, "commits": self.chunks, "cursor": str(self.cursor),
                **({"backlog_left": self.backlog} if self.backlog else {})}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def position(cursor: dict | None) -> tuple[datetime, str]:
    """A stored cursor {"at": ISO 8601, "id": source id} as a comparable (timestamp, id) pair."""
    if not cursor:
        return (EPOCH, "")
    return (datetime.fromisoformat(cursor["at"]), str(cursor.get("id", "")))


def _chunks(records: Iterable[tuple[str, Any, dict]], size: int,
            backlog: list[str]) -> Iterator[list[tuple[str, Any, dict]]]:
    """The records in chunks of `size`; a `Backlog` marker ends the read (its reason goes to `backlog`)."""
    chunk: list = []
    for record in records:
        if isinstance(record, Backlog):
            backlog.append(record.reason)
            break
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _mark_last(items: Iterator[Any]) -> Iterator[tuple[Any, bool]]:
    """Each item with whether it is the last (reads one ahead)."""
    item = next(items, None)
    while item is not None:
        following = next(items, None)
        yield item, following is None
        item = following


def extract_stream(
    connect: Callable[[], psycopg.Connection],
    channel: str,
    entity: str,
    read: Callable[[Any], Iterable[tuple[str, Any, dict]]],
    chunk_size: int = CHUNK,
    ordered: bool = True,
) -> StreamResult:
    """Read `read(cursor)` and land it in raw.<channel>_<entity>, committing rows and cursor together.

    `cursor` is the stream's stored position {"at", "id"} (None on the first run). A change feed comes
    in time order (`ordered`), so its cursor advances with every chunk. A level read does not (levels
    come by item or warehouse, whatever their update times): its rows land chunk by chunk, but its cursor
    moves only with the last chunk, so a read that dies halfway is read again from the old cursor
    rather than resumed past levels it never reached. A feed's cursor carries `read_at` and `read_to`
    (module docstring)."""
    table = f"{channel}_{entity}"
    result = StreamResult(channel, entity, uuid.uuid4().hex)
    with connect() as lock_conn:
        lock_conn.autocommit = True
        key = f"extract/{channel}/{entity}"
        if not lock_conn.execute("select pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]:
            raise StreamBusy(f"stream {channel}/{entity} is being extracted by another process")
        try:
            with connect() as conn:
                with conn.transaction():
                    conn.execute(raw.api_table_ddl(table))
                cursor = raw.read_cursor(conn, channel, entity)
                conn.commit()
                result.cursor = cursor
                newest = None
                started = datetime.now(UTC).isoformat()
                backlog: list[str] = []
                chunks = _chunks(read(cursor), chunk_size, backlog)
                # (chunk, whether the cursor may move with it): every chunk of an ordered feed, the last
                # chunk of an unordered read.
                marked = ((chunk, True) for chunk in chunks) if ordered else _mark_last(chunks)
                for chunk, may_move in marked:
                    seen = max(((at, sid) for sid, at, _ in chunk if at is not None), default=None)
                    newest = max(newest, seen) if newest and seen else (newest or seen)
                    with conn.transaction():
                        loaded = raw.load_api_records(conn, table, chunk, result.batch_id)
                        current = raw.read_cursor(conn, channel, entity)
                        if newest and may_move and position(current) < newest:  # never move a cursor backwards
                            at = newest[0].isoformat()
                            result.cursor = {"at": at, "id": newest[1]}
                            if ordered:  # read up to `at` so far; all of it once the read reaches the end
                                result.cursor.update(read_at=started, read_to=at)
                            raw.write_cursor(conn, channel, entity, result.cursor)
                    result.received += loaded.received
                    result.inserted += loaded.inserted
                    result.duplicates += loaded.duplicates
                    result.conflicting += loaded.conflicting
                    result.chunks += 1
                result.backlog = backlog[0] if backlog else None
                if ordered and not backlog:
                    # The read reached the end of the feed: everything recorded before it started is in.
                    with conn.transaction():
                        current = raw.read_cursor(conn, channel, entity)
                        if current is not None:
                            result.cursor = {**current, "read_at": started, "read_to": started}
                            raw.write_cursor(conn, channel, entity, result.cursor)
        finally:
            lock_conn.execute("select pg_advisory_unlock(hashtext(%s))", (key,))
    return result
