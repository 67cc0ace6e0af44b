"""The ledger-sized marts enforce their row rules in PostgreSQL: the contract's constraints (not null, the
accepted values, DESIGN §7 rule 3 on a zero position) and the primary keys reject a bad row when it is
written, where a data test would scan the whole table after every build. Probed on the tables dbt really
built, in a transaction that is rolled back."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors, sql

from tests.valuation.valuation_harness import VALUATION_BUILD

pytestmark = pytest.mark.integration

AT = datetime(2026, 1, 1, tzinfo=UTC)

# A row each table accepts (its not-null columns, valid values) ...
VALID = {
    "fct_inventory_valuation": {
        "movement_id": "probe:1", "event_id": "1", "sku": "PROBE", "location": "WH", "method": "fifo",
        "valuation_sequence": 1, "balance_quantity": 0, "balance_value": 0,
    },
    "fct_cost_of_goods": {
        "cost_line_id": "probe:1:fifo:1", "issue_movement_id": "probe:1", "sku": "PROBE", "method": "avco",
        "cost_kind": "average", "booked_movement_id": "probe:1", "valuation_sequence": 1, "line_sequence": 1,
    },
    "fct_cost_layers": {
        "sku": "PROBE", "location": "WH", "source_movement_id": "probe:1", "layer_sequence": 1,
    },
    "fct_stock_movements": {
        "movement_id": "probe:1", "sku": "PROBE", "location": "WH", "movement_type": "receipt", "occurred_at": AT,
        "ledgered_at": AT,
    },
}

# ... and what each constraint must refuse: (table, changed columns, the error, the constraint or column named)
REFUSED = [
    ("fct_inventory_valuation", {"method": "lifo"}, errors.CheckViolation, "method"),
    ("fct_inventory_valuation", {"sku": None}, errors.NotNullViolation, "sku"),
    ("fct_inventory_valuation", {"location": None}, errors.NotNullViolation, "location"),
    ("fct_inventory_valuation", {"event_id": None}, errors.NotNullViolation, "event_id"),
    ("fct_inventory_valuation", {"balance_value": 1}, errors.CheckViolation, "zero_quantity_has_zero_value"),
    ("fct_cost_of_goods", {"cost_kind": "freight"}, errors.CheckViolation, "cost_kind"),
    ("fct_cost_of_goods", {"method": None}, errors.NotNullViolation, "method"),
    ("fct_cost_of_goods", {"booked_movement_id": None}, errors.NotNullViolation, "booked_movement_id"),
    ("fct_cost_of_goods", {"issue_movement_id": None}, errors.NotNullViolation, "issue_movement_id"),
    ("fct_cost_layers", {"location": None}, errors.NotNullViolation, "location"),
    ("fct_cost_layers", {"source_movement_id": None}, errors.NotNullViolation, "source_movement_id"),
    ("fct_stock_movements", {"movement_type": "theft"}, errors.CheckViolation, "movement_type"),
    ("fct_stock_movements", {"sku": None}, errors.NotNullViolation, "sku"),
    ("fct_stock_movements", {"ledgered_at": None}, errors.NotNullViolation, "ledgered_at"),
]


def _insert(conn: psycopg.Connection, table: str, row: dict) -> None:
    conn.execute(
        sql.SQL("insert into marts.{} ({}) values ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row))),
        list(row.values()))


def test_marts_refuse_rows_their_contract_forbids(warehouse, dbt):
    dbt("run", "--select", *VALUATION_BUILD, "fct_stock_movements")
    with warehouse.connect("transformer") as conn:
        tx = conn.transaction(force_rollback=True)
        with tx:
            for table, row in VALID.items():
                _insert(conn, table, row)  # accepted: the probes below fail for their one change only
            for table, change, error, named in REFUSED:
                with pytest.raises(error) as raised, conn.transaction():
                    _insert(conn, table, VALID[table] | change)
                diag = raised.value.diag
                assert named in (diag.constraint_name or "") + (diag.column_name or ""), (table, change, diag.message_primary)
            # The primary keys (added after the load): one row per movement; per SKU position one valuation row
            # per method and one cost line per method and line number.
            for table in ("fct_stock_movements", "fct_inventory_valuation", "fct_cost_of_goods"):
                with pytest.raises(errors.UniqueViolation), conn.transaction():
                    _insert(conn, table, VALID[table])


def test_a_mart_from_an_earlier_release_gets_its_keys(warehouse, dbt):
    """The valuation marts are incremental: their table outlives a release that changes its key or adds an index.
    A build that keeps the table replaces a primary key on other columns (fct_cost_of_goods keyed by cost_line_id,
    as it was) and adds the index it catches up by (valued_at), once."""
    dbt("run", "--select", *VALUATION_BUILD)
    table = "marts.fct_cost_of_goods"
    keys = ("select pg_get_constraintdef(oid) from pg_constraint where conrelid = %s::regclass and contype = 'p'")
    stamped = ("select count(*) from pg_index where indrelid = %s::regclass"
               " and pg_get_indexdef(indexrelid) like '%%(valued_at)'")
    with warehouse.connect("transformer", autocommit=True) as conn:
        (name,) = conn.execute("select conname from pg_constraint where conrelid = %s::regclass and contype = 'p'",
                               (table,)).fetchone()
        conn.execute(sql.SQL("alter table marts.fct_cost_of_goods drop constraint {}").format(sql.Identifier(name)))
        conn.execute("alter table marts.fct_cost_of_goods add primary key (cost_line_id)")
        for (index,) in conn.execute("select indexrelid::regclass::text from pg_index where indrelid = %s::regclass"
                                     " and pg_get_indexdef(indexrelid) like '%%(valued_at)'", (table,)).fetchall():
            conn.execute(sql.SQL("drop index {}").format(sql.SQL(index)))
        assert conn.execute(stamped, (table,)).fetchone()[0] == 0
    for _ in range(2):
        dbt("run", "--select", "fct_cost_of_goods")
        with warehouse.connect("transformer") as conn:
            assert conn.execute(keys, (table,)).fetchall() == [
                ("PRIMARY KEY (sku, valuation_sequence, method, line_sequence)",)]
            assert conn.execute(stamped, (table,)).fetchone()[0] == 1
