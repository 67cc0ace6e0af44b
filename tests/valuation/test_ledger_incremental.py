"""The ledger built incrementally (var ledger_incremental, macros/ledger.sql) equals a full refresh.

The raw tables log every change in ops.pending_loads; an incremental build maps only the batches logged since
the last one, ranks again only the groups of duplicate reports those rows join, and maps the whole ledger again
when anything else changed (reference data, a row updated or deleted). Checked here on one set of SKUs through
six builds: a second source's reports of a receipt and a sale that win over the first's (they carry the cost), a batch whose
rows were committed by two transactions with a build between them, a movement quarantined for an unknown SKU
and mapped once the SKU arrives, and a raw row corrected by hand. The valuation is built along (incrementally, a
checkpoint at every position) and checked against the Python reference after every build: after batches of new rows
it takes the changes-only path (int_valuation_entries_posted), which must resume before a report that stopped
counting, not only before the new one.
"""

from __future__ import annotations

import uuid

import pytest

from tests.valuation.valuation_harness import compare

pytestmark = pytest.mark.integration

LEDGER = ("+fct_stock_movements", "+int_movements_quarantined", "+int_stock_balances_running",
          "+fct_inventory_valuation", "+fct_cost_of_goods", "+fct_cost_layers")
VARS = ("--vars", "{ledger_incremental: true, valuation_incremental: true, valuation_checkpoint_interval: 1,"
                  " valuation_checkpoints: 32}")
MAPPED = "intermediate.int_movements_mapped"
DEDUPLICATED = "intermediate.int_movements_deduplicated"
MART = "marts.fct_stock_movements"


def _can_create_temporary_tables(warehouse) -> bool:
    with warehouse.connect("transformer") as conn:
        return conn.execute("select has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0]


def _movement(prefix: str, source: str, n: int, sku: str, movement_type: str, quantity: str, **extra) -> dict:
    return {"source": source, "event_id": f"{prefix}/{n}", "occurred_at": f"2024-03-{n % 28 + 1:02d}T10:00:00Z",
            "sku": sku, "location": f"{prefix}-L1", "movement_type": movement_type, "quantity": quantity,
            "uom": "EA", "unit_cost": None, "currency": None, "reference": None, **extra}


def _load(warehouse, kind: str, rows: list[dict], batch_id: str | None = None) -> None:
    from orchestration.lib import raw

    with warehouse.connect("loader") as conn, conn.transaction():
        raw.load_file_rows(conn, kind, rows, batch_id or uuid.uuid4().hex)


def _rows(conn, prefix: str) -> dict[str, set[tuple]]:
    """The ledger models' rows for this test's events, without the build stamps."""
    like = f"{prefix}/%"
    return {
        "mapped": set(conn.execute(
            f"select source_name, event_id, sku, location, movement_type, quantity, factor_to_base, quarantine_reason"  # noqa: S608
            f" from {MAPPED} where event_id like %s", (like,)).fetchall()),
        "deduplicated": set(conn.execute(
            f"select source_name, event_id, sku, quantity_base, unit_cost_base, winning_source, is_reported_first"  # noqa: S608
            f" from {DEDUPLICATED} where event_id like %s", (like,)).fetchall()),
        "unified": set(conn.execute(
            "select movement_id, sku, location, movement_type, quantity_base, unit_cost_base, reference"
            " from intermediate.int_movements_unified where event_id like %s", (like,)).fetchall()),
        "fct_stock_movements": set(conn.execute(
            "select movement_id, source_name, event_id, channel, occurred_at, sku, location, movement_type, quantity_base,"
            " base_uom, unit_cost_base, currency, reference, quantity_source, uom_source, factor_to_base, loaded_at"
            " from marts.fct_stock_movements where event_id like %s", (like,)).fetchall()),
        "balances": set(conn.execute(
            "select movement_id, sku, location, movement_type, quantity_base, balance_after, is_latest"
            " from intermediate.int_stock_balances_running where event_id like %s", (like,)).fetchall()),
        "quarantined": set(conn.execute(
            "select source_name, event_id, quarantine_reason from intermediate.int_movements_quarantined"
            " where event_id like %s", (like,)).fetchall()),
    }


def _versions(conn, table: str, prefix: str) -> dict[str, str]:
    return dict(conn.execute(
        f"select source_name || ':' || event_id, xmin::text from {table} where event_id like %s",  # noqa: S608 - the test's tables
        (f"{prefix}/%",)).fetchall())


def _balance_versions(conn, sku: str) -> dict[str, str]:
    return dict(conn.execute(
        "select movement_id, xmin::text from intermediate.int_stock_balances_running where sku = %s", (sku,)).fetchall())


def test_incremental_ledger_equals_full_refresh(warehouse, dbt):
    if not _can_create_temporary_tables(warehouse):
        pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres incremental builds need it")
    prefix = f"LEDGINC-{uuid.uuid4().hex[:8]}"
    a, b, c, d = (f"{prefix}-{x}" for x in "ABCD")
    _load(warehouse, "locations", [{"location": f"{prefix}-L1", "kind": "store", "master_channel": "file"}])
    _load(warehouse, "skus", [{"sku": s, "base_uom": "EA", "description": "ledger test"} for s in (a, b, d)])
    _load(warehouse, "movements", [
        _movement(prefix, "erp", 1, a, "receipt", "10", reference=f"{prefix}/PO-1"),  # no cost: held back
        _movement(prefix, "erp", 2, a, "receipt", "5", unit_cost="2.00", reference=f"{prefix}/PO-2"),
        _movement(prefix, "erp", 3, a, "sale", "-3"),
        _movement(prefix, "erp", 4, b, "receipt", "7", unit_cost="1.50"),
        _movement(prefix, "erp", 10, a, "sale", "-1", reference=f"{prefix}/ORD-1"),
        _movement(prefix, "erp", 12, b, "physical_count", "6"),
        _movement(prefix, "erp", 13, b, "sale", "-1"),
        _movement(prefix, "erp", 14, d, "receipt", "10", unit_cost="1.00"),
        _movement(prefix, "erp", 15, d, "sale", "-2", reference=f"{prefix}/ORD-D"),
        _movement(prefix, "erp", 16, d, "sale", "-1"),
    ])
    dbt("run", "--select", *LEDGER, *VARS, "--full-refresh")
    d_entries = ("select valuation_sequence, xmin::text from intermediate.int_valuation_entries_posted"
                 " where sku = %s and entry_kind = 'movement' order by 1")
    with warehouse.connect("transformer") as conn:
        first = _rows(conn, prefix)
        first_versions = _versions(conn, MAPPED, prefix)
        first_mart_versions = _versions(conn, MART, prefix)
        assert f"erp:{prefix}/10" in first_mart_versions
        assert ("erp", f"{prefix}/1", "receipt_without_cost") in first["quarantined"]
        assert not compare(conn, prefix)
        d_first = conn.execute(d_entries, (d,)).fetchall()
        assert len(d_first) == 3  # one entry per movement, FIFO and AVCO side by side

    # The WMS reports receipt PO-1 and sales ORD-1 and ORD-D with their costs: its reports win, the ERP's stop
    # counting (the sales leave the ledger and the mart). ORD-D's report comes later than the ERP's: D is valued again
    # from before the ERP's (its first movement is kept). One more sale of B.
    _load(warehouse, "movements", [
        _movement(prefix, "wms", 5, a, "receipt", "10", unit_cost="3.00", reference=f"{prefix}/PO-1"),
        _movement(prefix, "wms", 6, b, "sale", "-2"),
        _movement(prefix, "wms", 11, a, "sale", "-1", unit_cost="2.00", reference=f"{prefix}/ORD-1"),
        _movement(prefix, "wms", 18, d, "sale", "-2", unit_cost="1.00", reference=f"{prefix}/ORD-D"),
    ])
    dbt("run", "--select", *LEDGER, *VARS)
    with warehouse.connect("transformer") as conn:
        assert not compare(conn, prefix)
        assert conn.execute(d_entries, (d,)).fetchall()[:1] == d_first[:1]
        second = _rows(conn, prefix)
        # incremental: the rows mapped before are not written again
        assert {k: v for k, v in _versions(conn, MAPPED, prefix).items() if k in first_versions} == first_versions
        mart_versions = _versions(conn, MART, prefix)
        assert f"erp:{prefix}/10" not in mart_versions and f"wms:{prefix}/11" in mart_versions
        assert {k: v for k, v in mart_versions.items() if k in first_mart_versions} == {
            k: v for k, v in first_mart_versions.items() if k not in (f"erp:{prefix}/10", f"erp:{prefix}/15")}
        assert ("erp", f"{prefix}/1", "receipt_without_cost") not in second["quarantined"]
        assert {(r[1], r[6]) for r in second["deduplicated"] if r[1] in (f"{prefix}/1", f"{prefix}/5")} == {
            (f"{prefix}/1", False), (f"{prefix}/5", True)}
        assert not conn.execute("select count(*) from ops.pending_loads").fetchone()[0]

    with warehouse.connect("transformer") as conn:
        balances_of_a = _balance_versions(conn, a)
    # One batch, committed by two transactions with a build between them: both parts reach the ledger, once.
    batch = uuid.uuid4().hex
    _load(warehouse, "movements", [_movement(prefix, "erp", 7, b, "adjustment", "1")], batch_id=batch)
    dbt("run", "--select", *LEDGER, *VARS)
    _load(warehouse, "movements", [_movement(prefix, "erp", 8, b, "adjustment", "-1"),
                                   _movement(prefix, "erp", 9, c, "receipt", "4", unit_cost="1.00")], batch_id=batch)
    dbt("run", "--select", *LEDGER, *VARS)
    with warehouse.connect("transformer") as conn:
        third = _rows(conn, prefix)
        assert not compare(conn, prefix)
        assert {r[1] for r in third["mapped"]} >= {f"{prefix}/7", f"{prefix}/8", f"{prefix}/9"}
        assert ("erp", f"{prefix}/9", "unknown_sku") in third["quarantined"]
        # back-dated before B's count: B's balances are written again from there, A's are left as they were
        assert _balance_versions(conn, a) == balances_of_a
        assert dict(conn.execute(
            "select event_id, balance_after from intermediate.int_stock_balances_running where sku = %s", (b,)
        ).fetchall()) == {f"{prefix}/{n}": balance for n, balance in ((4, 7), (6, 5), (7, 6), (8, 5), (12, 6), (13, 5))}
        unchanged = _versions(conn, MAPPED, prefix)

    # SKU C arrives (reference data): the ledger is mapped whole, and its receipt leaves the quarantine.
    _load(warehouse, "skus", [{"sku": c, "base_uom": "EA", "description": "ledger test"}])
    dbt("run", "--select", *LEDGER, *VARS)
    with warehouse.connect("transformer") as conn:
        fourth = _rows(conn, prefix)
        assert not compare(conn, prefix)
        assert not any(r[1] == f"{prefix}/9" for r in fourth["quarantined"])
        assert (f"erp:{prefix}/9", c, f"{prefix}-L1", "receipt", 4, 1, None) in fourth["unified"]
        assert all(_versions(conn, MAPPED, prefix)[k] != v for k, v in unchanged.items())  # mapped again

    # A raw row corrected by hand (an update the loader never makes): mapped whole again.
    with warehouse.admin_connect(autocommit=True) as conn:
        conn.execute("update raw.file_movements set quantity = -4 where source = 'erp' and event_id = %s",
                     (f"{prefix}/3",))
    dbt("run", "--select", *LEDGER, *VARS)
    with warehouse.connect("transformer") as conn:
        incremental = _rows(conn, prefix)
        assert not compare(conn, prefix)
        assert (f"erp:{prefix}/3", a, f"{prefix}-L1", "sale", -4, None, None) in incremental["unified"]

    dbt("run", "--select", *LEDGER, *VARS, "--full-refresh")
    with warehouse.connect("transformer") as conn:
        assert _rows(conn, prefix) == incremental


def test_raw_changes_are_logged_for_the_ledger(warehouse):
    """New rows are logged per batch; an upsert that changes nothing is not logged; one that changes a row, and
    a delete, are logged without a batch (the ledger is mapped whole). The entries stay for the next build."""
    prefix = f"LEDGLOG-{uuid.uuid4().hex[:8]}"
    sku = {"sku": f"{prefix}-A", "base_uom": "EA", "description": "log test"}

    def logged_since(start):
        with warehouse.admin_connect(autocommit=True) as conn:
            return conn.execute(  # one entry per statement: summed per batch
                "select table_name, batch_id, sum(row_count)::int from ops.pending_loads where logged_at > %s"
                " group by table_name, batch_id order by min(logged_at)", (start,)).fetchall()

    def now():
        with warehouse.admin_connect(autocommit=True) as conn:
            return conn.execute("select clock_timestamp()").fetchone()[0]

    start = now()
    _load(warehouse, "movements", [_movement(prefix, "erp", n, sku["sku"], "adjustment", "1") for n in (1, 2)],
          batch_id=f"{prefix}-b1")
    _load(warehouse, "movements", [_movement(prefix, "erp", 1, sku["sku"], "adjustment", "1")], batch_id=f"{prefix}-b2")
    _load(warehouse, "skus", [sku])
    # the re-sent movement (b2) inserted nothing; the new SKU is reference data: no batch
    assert logged_since(start) == [("file_movements", f"{prefix}-b1", 2), ("file_skus", None, 1)]
    start = now()
    _load(warehouse, "skus", [sku])
    assert logged_since(start) == []  # the same row again
    _load(warehouse, "skus", [{**sku, "description": "renamed"}])
    with warehouse.admin_connect(autocommit=True) as conn:
        conn.execute("delete from raw.file_movements where event_id = %s", (f"{prefix}/2",))
    assert logged_since(start) == [("file_skus", None, 1), ("file_movements", None, 1)]
