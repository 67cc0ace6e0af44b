"""Suites on stock and value (DESIGN §6, §7): positions, FIFO/AVCO valuation and open cost layers agree
with each other, zero stock carries zero value, and costs are never negative. Negative positions are
allowed (channel data lags, §7.11) but never hidden: they fail a warning suite."""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations._common import (
    DEFAULT_SCHEMAS,
    WARNING,
    Schemas,
    finite,
    not_null,
    not_null_between,
    not_null_in_set,
    rows,
    sql,
    suite,
)

POSITION_QUANTITIES = ("on_hand_quantity", "committed_quantity", "damaged_quantity", "in_transit_quantity", "available_quantity")
POSITION_VALUES = ("inventory_value_fifo", "inventory_value_avco", "unit_cost_avco")


def stock_positions_integrity(schemas: Schemas = DEFAULT_SCHEMAS) -> gx.ExpectationSuite:
    return suite(
        "stock_positions_integrity",
        [
            not_null(["sku", "location", "on_hand_quantity", "available_quantity", "inventory_value_fifo", "inventory_value_avco", "as_of"]),
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["sku", "location"]),
            not_null_between("committed_quantity", min_value=0),
            not_null_between("damaged_quantity", min_value=0),
            not_null_between("in_transit_quantity", min_value=0),
            finite([*POSITION_QUANTITIES, *POSITION_VALUES], ["sku", "location"]),
            # Units issued beyond the layers leave a negative balance and no layer (§7.11), hence greatest(…, 0).
            rows(
                sql(
                    "with p as (select * from {batch}),"
                    " layers as (select sku, location, sum(quantity_remaining_base) as open_layer_quantity"
                    " from {marts}.fct_cost_layers group by sku, location)"
                    " select sku, location, p.on_hand_quantity, coalesce(l.open_layer_quantity, 0) as open_layer_quantity"
                    " from p full join layers as l using (sku, location)"
                    " where coalesce(l.open_layer_quantity, 0) <> greatest(coalesce(p.on_hand_quantity, 0), 0)",
                    schemas,
                ),
                "open FIFO layers sum to the on-hand quantity of each sku and location",
            ),
            rows(
                sql(
                    "with p as (select * from {batch}),"
                    " changes as (select sku, location,"
                    " sum(stock_value_change) filter (where method = 'fifo') as fifo_value,"
                    " sum(stock_value_change) filter (where method = 'avco') as avco_value"
                    " from {marts}.fct_inventory_valuation group by sku, location)"
                    " select p.sku, p.location, p.inventory_value_fifo, c.fifo_value, p.inventory_value_avco, c.avco_value"
                    " from p left join changes as c using (sku, location)"
                    " where p.inventory_value_fifo <> coalesce(c.fifo_value, 0)"
                    " or p.inventory_value_avco <> coalesce(c.avco_value, 0)",
                    schemas,
                ),
                "inventory_value_fifo and inventory_value_avco equal the sum of that method's stock value changes",
            ),
            rows(
                sql(
                    "select sku, location, on_hand_quantity, inventory_value_fifo, inventory_value_avco from {batch}"
                    " where on_hand_quantity = 0 and (inventory_value_fifo <> 0 or inventory_value_avco <> 0)",
                    schemas,
                ),
                "a position of exactly zero units has exactly zero value (no rounding residue)",
            ),
        ],
        meta={"relation": f"{schemas.marts}.fct_stock_positions", "design": "DESIGN §6, §7.3, §7.11"},
    )


def valuation_integrity(schemas: Schemas = DEFAULT_SCHEMAS) -> gx.ExpectationSuite:
    keys = ["event_id", "sku", "location", "method"]
    return suite(
        "valuation_integrity",
        [
            not_null(["event_id", "sku", "location", "occurred_at", "movement_type", "quantity_base",
                      "stock_value_change", "revaluation_amount", "balance_quantity", "balance_value"]),
            not_null_in_set("method", ("fifo", "avco")),
            finite(["quantity_base", "unit_cost_applied", "stock_value_change", "revaluation_amount", "balance_quantity", "balance_value"], keys),
            rows(
                sql("select event_id, sku, location, method, unit_cost_applied from {batch} where unit_cost_applied < 0", schemas),
                "no movement is valued at a negative unit cost",
            ),
            # The final balance must be the sum of every value change. "Final" is taken as any row at the
            # latest occurred_at, so tie order (which the model decides) cannot raise a false alarm.
            rows(
                sql(
                    "with v as (select * from {batch}),"
                    " totals as (select sku, location, method, sum(stock_value_change) as total_value_change,"
                    " max(occurred_at) as last_occurred_at from v group by sku, location, method)"
                    " select t.sku, t.location, t.method, t.total_value_change, t.last_occurred_at from totals as t"
                    " where not exists (select 1 from v where v.sku = t.sku and v.location = t.location"
                    " and v.method = t.method and v.occurred_at = t.last_occurred_at and v.balance_value = t.total_value_change)",
                    schemas,
                ),
                "per sku, location and method, stock value changes sum to the final balance_value",
            ),
            rows(
                sql(
                    "select event_id, sku, location, method, balance_quantity, balance_value from {batch}"
                    " where balance_quantity = 0 and balance_value <> 0",
                    schemas,
                ),
                "a balance of exactly zero units has exactly zero value",
            ),
        ],
        meta={"relation": f"{schemas.marts}.fct_inventory_valuation", "design": "DESIGN §7"},
    )


def cost_layers_integrity(schemas: Schemas = DEFAULT_SCHEMAS) -> gx.ExpectationSuite:
    keys = ["sku", "location", "source_event_id", "layer_sequence"]
    return suite(
        "cost_layers_integrity",
        [
            not_null(["sku", "location", "source_event_id", "layer_sequence", "layer_value", "received_at"]),
            not_null_between("quantity_remaining_base", min_value=0, strict_min=True),
            not_null_between("unit_cost_base", min_value=0),
            finite(["quantity_remaining_base", "unit_cost_base", "layer_value"], keys),
            rows(
                sql("select sku, location, source_event_id, layer_sequence, layer_value from {batch} where layer_value < 0", schemas),
                "no open layer carries a negative value",
            ),
        ],
        meta={"relation": f"{schemas.marts}.fct_cost_layers", "design": "DESIGN §7.4, §7.5"},
    )


def negative_positions(schemas: Schemas = DEFAULT_SCHEMAS) -> gx.ExpectationSuite:
    """Negative on-hand is allowed and valued (§7.11) but must be seen: a warning, never a block."""
    return suite(
        "negative_positions",
        [
            rows(
                sql("select sku, location, on_hand_quantity, as_of from {batch} where on_hand_quantity < 0", schemas),
                "no sku is below zero on hand at any location",
                WARNING,
            ),
        ],
        meta={"relation": f"{schemas.marts}.fct_stock_positions", "design": "DESIGN §7.11", "reference": "B-NEG"},
    )
