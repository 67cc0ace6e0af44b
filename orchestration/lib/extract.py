"""Extraction of one channel stream into its raw table, effectively exactly once (DESIGN §9, I-1, I-3).

A stream is (channel, entity). One extractor per stream at a time: a session advisory lock on a
dedicated connection (released when the connection closes, so a killed extractor never leaves it
held). Records are loaded in chunks; each chunk's rows and the advanced cursor commit in ONE
transaction, so a crash loses at most the uncommitted chunk and the next run re-reads it (the client
re-reads over a lookback with ≥, and `on conflict do nothing` drops the repeats). A cursor never moves
backwards: a source that reports older positions is read, never followed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from orchestration.lib import raw

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

    def metadata(self) -> dict[str, Any]:
        return {"received": self.received, "inserted": self.inserted, "duplicates": self.duplicates,
                "conflicting_duplicates": self.conflicting, "commits": self.chunks, "cursor": str(self.cursor)}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def position(cursor: dict | None) -> tuple[datetime, str]:
    """A stored cursor {"at": ISO 8601, "id": source id} as a comparable (timestamp, id) pair."""
    if not cursor:
        return (EPOCH, "")
    return (datetime.fromisoformat(cursor["at"]), str(cursor.get("id", "")))


def _chunks(records: Iterable[tuple[str, Any, dict]], size: int) -> Iterator[list[tuple[str, Any, dict]]]:
    chunk: list = []
    for record in records:
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
    rather than resumed past levels it never reached."""
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
                chunks = _chunks(read(cursor), chunk_size)
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
                            result.cursor = {"at": newest[0].isoformat(), "id": newest[1]}
                            raw.write_cursor(conn, channel, entity, result.cursor)
                    result.received += loaded.received
                    result.inserted += loaded.inserted
                    result.duplicates += loaded.duplicates
                    result.conflicting += loaded.conflicting
                    result.chunks += 1
        finally:
            lock_conn.execute("select pg_advisory_unlock(hashtext(%s))", (key,))
    return result
