"""The valuation's cross-row data tests catch what they guard: on marts dbt really built from generated
histories they pass, and each change below (committed to the marts, then undone) makes exactly the
guarding test fail, naming the movement or position. Two of them work in two steps (per SKU and method,
counts and sums weighted by a hash of each movement id; then movement by movement where those differ): a
cent moved between two of a SKU's movements leaves its plain sum unchanged and must still be found."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from psycopg import errors

from tests.valuation.test_positions_reference import _histories
from tests.valuation.valuation_harness import VALUATION_BUILD, load_histories

pytestmark = pytest.mark.integration

RECONCILE = "assert_cost_lines_reconcile_with_valuation"
LAYERS = "assert_fifo_layers_equal_closing_balance"
ONCE = "assert_every_movement_valued_once_per_method"
TESTS = (RECONCILE, LAYERS, ONCE)


def _failures(dbt) -> dict[str, int]:
    """The rows each of TESTS returns (0: it passed), from one `dbt test`."""
    out = dbt("test", "--select", *TESTS, check=False).stdout
    rows = {}
    for test in TESTS:
        found = re.search(rf"(PASS|FAIL (\d+)) {test} ", out)
        assert found, out[-3000:]
        rows[test] = int(found.group(2) or 0)
    return rows


PASSING = dict.fromkeys(TESTS, 0)


def test_reconciliation_and_layer_tests_fail_on_tampered_marts(warehouse, dbt, load_file_rows):
    skus = load_histories(load_file_rows, _histories(25))
    prefix = skus[0].rsplit("-", 1)[0] + "-%"
    dbt("run", "--select", *VALUATION_BUILD)
    assert _failures(dbt) == PASSING

    with warehouse.connect("transformer", autocommit=True) as conn:  # each change is committed: dbt reads it
        # two FIFO layer lines of one SKU on different movements, the first of some cost
        a, b = conn.execute(
            "select l1.cost_line_id, l2.cost_line_id from marts.fct_cost_of_goods as l1"
            " join marts.fct_cost_of_goods as l2 on l2.sku = l1.sku and l2.method = l1.method"
            "  and l2.booked_movement_id <> l1.booked_movement_id"
            " where l1.sku like %s and l1.method = 'fifo' and l1.cost_kind = 'layer' and l2.cost_kind = 'layer'"
            "  and l1.cost_amount <> 0"  # (moved to another movement, a line of no cost changes no sum)
            " order by l1.cost_line_id, l2.cost_line_id limit 1", (prefix,)).fetchone()
        layer = conn.execute(
            "select sku, location, layer_sequence from marts.fct_cost_layers where sku like %s"
            " order by sku, location, layer_sequence limit 1", (prefix,)).fetchone()
        cent = Decimal("0.01")
        moved = "update marts.fct_cost_of_goods set cost_amount = cost_amount + %s where cost_line_id = %s"
        renamed = "update marts.fct_cost_of_goods set booked_movement_id = %s where cost_line_id = %s"
        booked_a = conn.execute("select booked_movement_id from marts.fct_cost_of_goods where cost_line_id = %s",
                                (a,)).fetchone()[0]
        layer_value = ("update marts.fct_cost_layers set layer_value = layer_value + %s"
                       " where sku = %s and location = %s and layer_sequence = %s")
        # a movement with no cost line booked on it: doubling or dropping its row concerns only the once test
        movement = conn.execute(
            "select movement_id from marts.fct_inventory_valuation as v where sku like %s and not exists"
            " (select 1 from marts.fct_cost_of_goods as c where c.booked_movement_id = v.movement_id)"
            " order by movement_id limit 1", (prefix,)).fetchone()[0]
        valued_row = conn.execute("select * from marts.fct_inventory_valuation where movement_id = %s"
                                  " and method = 'avco'", (movement,)).fetchone()
        # (the copy at a position of its own: a position holds one row per method, the primary key)
        doubled = ("insert into marts.fct_inventory_valuation select (jsonb_populate_record("
                   "null::marts.fct_inventory_valuation,"
                   " to_jsonb(v) || jsonb_build_object('valuation_sequence', v.valuation_sequence + 1000000))).*"
                   " from marts.fct_inventory_valuation as v where movement_id = %s and method = 'fifo'")
        undoubled = ("delete from marts.fct_inventory_valuation"
                     " where movement_id = %s and method = 'fifo' and valuation_sequence > 1000000")
        dropped = "delete from marts.fct_inventory_valuation where movement_id = %s and method = 'avco'"
        restored = f"insert into marts.fct_inventory_valuation values ({', '.join(['%s'] * len(valued_row))})"  # noqa: S608 (placeholders only)
        # (guarding test, failing rows expected, changes, the changes undone)
        tampered = [
            # a cent moved from one movement's lines to another's: the SKU's plain sum is unchanged
            (RECONCILE, 2, [(moved, (cent, a)), (moved, (-cent, b))], [(moved, (-cent, a)), (moved, (cent, b))]),
            # a line booked on a movement the valuation does not have: that line, and the movement it left short
            (RECONCILE, 2, [(renamed, (booked_a + "-gone", a))], [(renamed, (booked_a, a))]),
            # a movement valued twice by one method; one not valued by a method
            (ONCE, 1, [(doubled, (movement,))], [(undoubled, (movement,))]),
            (ONCE, 1, [(dropped, (movement,))], [(restored, (*valued_row,))]),
            # an open layer's value off by a cent
            (LAYERS, 1, [(layer_value, (cent, *layer))], [(layer_value, (-cent, *layer))]),
        ]
        for test, expected, changes, undo in tampered:
            with conn.transaction():
                for statement, params in changes:
                    assert conn.execute(statement, params).rowcount == 1
            try:
                assert _failures(dbt) == PASSING | {test: expected}, changes  # the guarding test only
            finally:
                with conn.transaction():
                    for statement, params in undo:
                        conn.execute(statement, params)
            assert _failures(dbt) == PASSING


def test_an_entry_of_no_known_kind_is_refused(warehouse, dbt, load_file_rows):
    """entry_kind is kept one of its four values by a CHECK constraint (as rows are written, not by a data test
    reading gigabytes in every build): another value, or none, is refused."""
    load_histories(load_file_rows, _histories(3))
    dbt("run", "--select", *VALUATION_BUILD)
    with warehouse.connect("transformer") as conn:
        for value in ("bogus", None):
            with pytest.raises(errors.CheckViolation), conn.transaction():
                conn.execute("update intermediate.int_valuation_entries_posted set entry_kind = %s"
                             " where entry_kind = 'open_layer'", (value,))
