"""The raw landing layer: table definitions and loss-free, duplicate-free loading.

Owns every `raw.*` table. API channels land one JSON payload per source record in
`raw.<channel>_<entity>` keyed by the source's id; the file channel lands typed canonical rows
(DESIGN §5) in `raw.file_*`. Loading is effectively exactly once (DESIGN §9, I-1 and I-3):
`insert … on conflict do nothing` on the source key, the stream's cursor advanced in the same
transaction; orchestration.lib.extract fences a second loader per stream with an advisory lock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

IDENT = r"^[a-z_][a-z0-9_]{0,62}$"

# Canonical file-channel tables (DESIGN §5, §6): name -> (columns with types, natural key, append-only?)
FILE_TABLES: dict[str, tuple[list[tuple[str, str]], list[str], bool]] = {
    "movements": (
        [
            ("source", "text not null"),
            ("event_id", "text not null"),
            ("occurred_at", "timestamptz not null"),
            ("sku", "text not null"),
            ("location", "text not null"),
            ("movement_type", "text not null"),
            ("quantity", "numeric not null check (quantity <> 'NaN' and abs(quantity) < 1e12)"),
            ("uom", "text not null"),
            ("unit_cost", "numeric check (unit_cost <> 'NaN' and unit_cost >= 0 and unit_cost < 1e12)"),
            ("currency", "text"),
            ("reference", "text"),
        ],
        ["source", "event_id"],
        True,
    ),
    "skus": ([("sku", "text not null"), ("base_uom", "text not null"), ("description", "text")], ["sku"], False),
    "uom_conversions": (
        [("sku", "text not null"), ("uom", "text not null"), ("factor_to_base", "numeric not null check (factor_to_base > 0)")],
        ["sku", "uom"],
        False,
    ),
    "locations": (
        [("location", "text not null"), ("kind", "text not null"), ("master_channel", "text not null")],
        ["location"],
        False,
    ),
    "listings": (
        [
            ("channel", "text not null"),
            ("channel_sku", "text not null"),
            ("channel_location", "text not null"),
            ("sku", "text not null"),
            ("location", "text not null"),
        ],
        ["channel", "channel_sku", "channel_location"],
        False,
    ),
    "policies": (
        [
            ("channel", "text not null"),
            ("safety_buffer", "numeric not null default 0"),
            ("percentage", "numeric not null default 100"),
            ("maximum", "numeric"),
            ("minimum", "numeric"),
            ("conflict_rule", "text not null default 'master_wins'"),
            ("in_flight_seconds", "numeric"),
        ],
        ["channel"],
        False,
    ),
    "kit_components": (
        [("kit_sku", "text not null"), ("component_sku", "text not null"), ("quantity_per_kit", "numeric not null check (quantity_per_kit > 0)")],
        ["kit_sku", "component_sku"],
        False,
    ),
}


def file_table_ddl(kind: str) -> sql.Composed:
    columns, key, _ = FILE_TABLES[kind]
    cols = [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(typ)) for name, typ in columns]
    cols += [
        sql.SQL("batch_id text not null"),
        sql.SQL("loaded_at timestamptz not null default now()"),
        sql.SQL("primary key ({})").format(sql.SQL(", ").join(map(sql.Identifier, key))),
    ]
    return sql.SQL("create table if not exists raw.{} ({})").format(
        sql.Identifier(f"file_{kind}"), sql.SQL(", ").join(cols)
    )


def api_table_ddl(table: str) -> sql.Composed:
    return sql.SQL(
        "create table if not exists raw.{} ("
        " source_id text primary key,"
        " cursor_at timestamptz,"
        " payload jsonb not null,"
        " batch_id text not null,"
        " loaded_at timestamptz not null default now())"
    ).format(sql.Identifier(table))


# The triggers that log every change to a raw table in ops.pending_loads (created by the warehouse bootstrap),
# which is how an incremental build of the ledger knows what to read: name -> (event, transition tables, function
# for an append-only table, function for one whose rows may change). New rows of an append-only table are logged
# per batch (the build reads those batches); any other change makes the next build map the ledger whole.
LOAD_LOG_TRIGGERS = {
    "log_inserts": ("insert", "referencing new table as new_rows", "ops.log_new_rows", "ops.log_changed_rows"),
    "log_updates": ("update", "referencing old table as old_rows new table as new_rows", "ops.log_changed_rows",
                    "ops.log_changed_rows"),
    "log_deletes": ("delete", "referencing old table as old_rows", "ops.log_changed_rows", "ops.log_changed_rows"),
    "log_truncates": ("truncate", "", "ops.log_changed_rows", "ops.log_changed_rows"),
}


def ensure_load_log(conn: psycopg.Connection, table: str, append_only: bool) -> None:
    """Put the load-log triggers on raw.<table> (once: an existing trigger is left alone), and an index on
    batch_id, by which an incremental build reads a batch."""
    present = {name for (name,) in conn.execute(
        "select tgname from pg_trigger where tgrelid = %s::regclass and not tgisinternal", (f"raw.{table}",)
    ).fetchall()}
    for name, (event, transition, appended, changed) in LOAD_LOG_TRIGGERS.items():
        if name in present:
            continue
        conn.execute(sql.SQL("create trigger {} after {} on raw.{} {} for each statement execute function {}()").format(
            sql.Identifier(name), sql.SQL(event), sql.Identifier(table), sql.SQL(transition),
            sql.SQL(appended if append_only else changed)))
    # looked up first: CREATE INDEX IF NOT EXISTS would wait for the table's lock behind a load in progress
    if not conn.execute("select 1 from pg_indexes where schemaname = 'raw' and indexname = %s",
                        (f"{table}_batch_id",)).fetchone():
        conn.execute(sql.SQL("create index {} on raw.{} (batch_id)").format(
            sql.Identifier(f"{table}_batch_id"), sql.Identifier(table)))


def ensure_file_tables(conn: psycopg.Connection) -> None:
    """Create the file tables; on a warehouse made by an earlier release, add the columns it lacks (every
    column added after a table's first release is nullable or has a default)."""
    existing = {(t, c) for t, c in conn.execute(
        "select table_name, column_name from information_schema.columns where table_schema = 'raw'").fetchall()}
    for kind, (columns, _, append_only) in FILE_TABLES.items():
        table = f"file_{kind}"
        if not any(t == table for t, _ in existing):
            conn.execute(file_table_ddl(kind))
        else:
            for name, typ in columns:
                if (table, name) not in existing:
                    conn.execute(sql.SQL("alter table raw.{} add column {} {}").format(
                        sql.Identifier(table), sql.Identifier(name), sql.SQL(typ)))
        ensure_load_log(conn, table, append_only)


@dataclass
class LoadResult:
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicting: int = 0


def load_file_rows(conn: psycopg.Connection, kind: str, rows: Sequence[dict[str, Any]], batch_id: str) -> LoadResult:
    """Land canonical rows. Movements are append-only (a re-imported id changes nothing, a re-used id
    with a different payload is reported as conflicting); reference data is upserted on its key (of two rows
    with one key in a batch, the later wins). One statement per batch (COPY into a temporary table, then one
    insert): the raw table's triggers log the batch once (ops.pending_loads)."""
    columns, key, append_only = FILE_TABLES[kind]
    names = [c for c, _ in columns]
    ident = sql.Identifier(f"file_{kind}")
    result = LoadResult(received=len(rows))
    if not rows:
        return result
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    keys = sql.SQL(", ").join(map(sql.Identifier, key))
    with conn.cursor() as cur:
        cur.execute("drop table if exists _incoming_file_rows")
        cur.execute(sql.SQL("create temporary table _incoming_file_rows as"
                            " select 0::bigint as ordinal, {} from raw.{} with no data").format(cols, ident))
        before = None if append_only else cur.execute(sql.SQL("select count(*) from raw.{}").format(ident)).fetchone()[0]
        with cur.copy(sql.SQL("copy _incoming_file_rows (ordinal, {}) from stdin").format(cols)) as copy:
            for ordinal, row in enumerate(rows):
                copy.write_row([ordinal, *(row.get(n) for n in names)])
        if append_only:
            stmt = sql.SQL("insert into raw.{} ({}, batch_id) select {}, %s from _incoming_file_rows order by ordinal"
                           " on conflict ({}) do nothing").format(ident, cols, cols, keys)
        else:
            updates = [n for n in names if n not in key]
            stmt = sql.SQL(
                "insert into raw.{} ({}, batch_id) select distinct on ({}) {}, %s from _incoming_file_rows"
                " order by {}, ordinal desc on conflict ({}) do update set {}, batch_id = excluded.batch_id, loaded_at = now()"
            ).format(ident, cols, keys, cols, keys, keys,
                     sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(n)) for n in updates))
        written = cur.execute(stmt, (batch_id,)).rowcount
        cur.execute("drop table _incoming_file_rows")
        if append_only:
            result.inserted = written
            result.duplicates = result.received - result.inserted
        else:  # upserted: the rows new to the table
            result.inserted = cur.execute(sql.SQL("select count(*) from raw.{}").format(ident)).fetchone()[0] - before
    return result


_DECIMAL = re.compile(r'"\\u0000dec:([-+0-9.eE]+)"')


def dumps_exact(payload: Any) -> str:
    """JSON text with Decimals written as JSON numbers, digit for digit (json.dumps can't), so the
    raw payload keeps exactly what the API returned."""
    from decimal import Decimal

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"\u0000dec:{value}"
        return str(value)

    return _DECIMAL.sub(r"\1", json.dumps(payload, default=default))


def read_cursor(conn: psycopg.Connection, channel: str, stream: str) -> Any:
    row = conn.execute(
        "select cursor_value from ops.extract_cursors where channel = %s and stream = %s", (channel, stream)
    ).fetchone()
    return row[0] if row else None


def write_cursor(conn: psycopg.Connection, channel: str, stream: str, value: Any) -> None:
    conn.execute(
        "insert into ops.extract_cursors (channel, stream, cursor_value) values (%s, %s, %s)"
        " on conflict (channel, stream) do update set cursor_value = excluded.cursor_value, updated_at = now()",
        (channel, stream, json.dumps(value)),
    )


def load_api_records(
    conn: psycopg.Connection,
    table: str,
    records: Iterable[tuple[str, Any, dict]],
    batch_id: str,
) -> LoadResult:
    """Insert (source_id, cursor_at, payload) records into raw.<table>; duplicates are ignored."""
    rows = list(records)
    result = LoadResult(received=len(rows))
    if not rows:
        return result
    ident = sql.Identifier(table)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "create temporary table if not exists _incoming (source_id text, cursor_at timestamptz, payload jsonb) on commit drop"
            )
        )
        cur.execute("truncate _incoming")
        with cur.copy("copy _incoming (source_id, cursor_at, payload) from stdin") as copy:
            for source_id, cursor_at, payload in rows:
                copy.write_row((source_id, cursor_at, dumps_exact(payload)))
        inserted = cur.execute(
            sql.SQL(
                "insert into raw.{} (source_id, cursor_at, payload, batch_id)"
                " select distinct on (source_id) source_id, cursor_at, payload, %s from _incoming"
                " on conflict (source_id) do nothing"
            ).format(ident),
            (batch_id,),
        ).rowcount
        result.conflicting = cur.execute(
            sql.SQL(
                "select count(*) from _incoming i join raw.{} r using (source_id)"
                " where r.payload is distinct from i.payload and r.batch_id <> %s"
            ).format(ident),
            (batch_id,),
        ).fetchone()[0]
    result.inserted = inserted
    result.duplicates = result.received - inserted
    return result


def ensure_api_tables(conn: psycopg.Connection, registry=None) -> None:
    """Create `raw.<channel>_<entity>` for every registered channel entity (dbt sources need them)."""
    from orchestration.lib.registry import load_registry

    registry = registry or load_registry()
    for channel in registry.channels.values():
        for entity in channel.entities:
            conn.execute(api_table_ddl(channel.table(entity)))
            ensure_load_log(conn, channel.table(entity), append_only=True)
