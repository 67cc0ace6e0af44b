"""The valuation's cross-row data tests catch what they guard: on marts dbt really built from generated
histories they pass, and each change below (committed to the marts, then undone) makes exactly the
guarding test fail, naming the movement or position. The reconciliation test works in two steps (weighted
sums per SKU, then movement by movement where a sum differs): a cent moved between two of a SKU's
movements leaves its plain sum unchanged and must still be found."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from tests.valuation.test_positions_reference import _histories
from tests.valuation.valuation_harness import VALUATION_BUILD, load_histories

pytestmark = pytest.mark.integration

RECONCILE = "assert_cost_lines_reconcile_with_valuation"
LAYERS = "assert_fifo_layers_equal_closing_balance"


def _failures(dbt, test: str) -> int:
    """The rows `test` returns (0: it passed)."""
    out = dbt("test", "--select", test, check=False).stdout
    if re.search(rf"PASS {test} ", out):
        return 0
    found = re.search(rf"FAIL (\d+) {test} ", out)
    assert found, out[-3000:]
    return int(found.group(1))


def test_reconciliation_and_layer_tests_fail_on_tampered_marts(warehouse, dbt, load_file_rows):
    skus = load_histories(load_file_rows, _histories(25))
    prefix = skus[0].rsplit("-", 1)[0] + "-%"
    dbt("run", "--select", *VALUATION_BUILD)
    assert _failures(dbt, RECONCILE) == 0 and _failures(dbt, LAYERS) == 0

    with warehouse.connect("transformer", autocommit=True) as conn:  # each change is committed: dbt reads it
        # two FIFO lines of one SKU on different movements (layer lines, positive amounts)
        a, b = conn.execute(
            "select l1.cost_line_id, l2.cost_line_id from marts.fct_cost_of_goods as l1"
            " join marts.fct_cost_of_goods as l2 on l2.sku = l1.sku and l2.method = l1.method"
            "  and l2.booked_movement_id <> l1.booked_movement_id"
            " where l1.sku like %s and l1.method = 'fifo' and l1.cost_kind = 'layer' and l2.cost_kind = 'layer'"
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
        # (guarding test, failing rows expected, changes, the changes undone)
        tampered = [
            # a cent moved from one movement's lines to another's: the SKU's plain sum is unchanged
            (RECONCILE, 2, [(moved, (cent, a)), (moved, (-cent, b))], [(moved, (-cent, a)), (moved, (cent, b))]),
            # a line booked on a movement the valuation does not have: that line, and the movement it left short
            (RECONCILE, 2, [(renamed, (booked_a + "-gone", a))], [(renamed, (booked_a, a))]),
            # an open layer's value off by a cent
            (LAYERS, 1, [(layer_value, (cent, *layer))], [(layer_value, (-cent, *layer))]),
        ]
        for test, expected, changes, undo in tampered:
            with conn.transaction():
                for statement, params in changes:
                    assert conn.execute(statement, params).rowcount == 1
            try:
                assert _failures(dbt, test) == expected, (test, changes)
            finally:
                with conn.transaction():
                    for statement, params in undo:
                        conn.execute(statement, params)
            assert _failures(dbt, RECONCILE) == 0 and _failures(dbt, LAYERS) == 0
