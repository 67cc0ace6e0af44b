"""A small, hand-checkable valuation history for the report tests (and the browser test).

Two SKUs at two locations, every kind of flow the report shows: receipts (one in cases), sales, a
transfer pair, damage, a sale into negative stock settled by the next receipt (a revaluation), a count
below book, a costed positive adjustment, a referenced customer return (unit cost 62/12, so rounding
shows) and a referenced vendor return. The expected figures below are worked out by hand from
DESIGN §7, independently of the SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

PREFIX = "RPT-"
WH, ST = "RPT-WH", "RPT-ST"
SKU_A, SKU_B = "RPT-A", "RPT-B"
BUILD = ("build", "--select", "+fct_inventory_valuation", "+fct_cost_of_goods", "+fct_cost_layers",
         "+fct_stock_positions", "+fct_stock_movements", "+dim_skus",
         "+dim_locations", "+fct_channel_drift", "--exclude", "test_type:unit")


def _at(day: int, hour: int = 9) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def _m(eid, day, sku, loc, kind, qty, uom="EA", cost=None, ref=None, hour=9):
    return dict(source="erp", event_id=eid, occurred_at=_at(day, hour), sku=sku, location=loc,
                movement_type=kind, quantity=D(qty), uom=uom, unit_cost=None if cost is None else D(cost),
                currency="EUR", reference=ref)


MOVEMENTS = [
    _m("RPT-e1", 1, SKU_A, WH, "receipt", "10", cost="5.00", ref="PO-1"),
    _m("RPT-e2", 2, SKU_A, WH, "receipt", "1", uom="CS6", cost="36.00", ref="PO-2"),
    _m("RPT-e3", 3, SKU_A, WH, "sale", "-12", ref="SO-1"),
    _m("RPT-e4", 4, SKU_A, WH, "transfer_out", "-3", ref="RPT-T1"),
    _m("RPT-e5", 4, SKU_A, ST, "transfer_in", "3", ref="RPT-T1", hour=15),
    _m("RPT-e6", 5, SKU_A, ST, "damage", "-1"),
    _m("RPT-e7", 6, SKU_A, ST, "sale", "-4", ref="SO-2"),
    _m("RPT-e8", 7, SKU_A, ST, "receipt", "5", cost="7.00", ref="PO-3"),
    _m("RPT-e9", 8, SKU_A, WH, "physical_count", "0"),
    _m("RPT-e10", 9, SKU_A, WH, "adjustment", "2", cost="8.00"),
    _m("RPT-e11", 10, SKU_A, WH, "customer_return", "1", ref="RPT-e3"),
    _m("RPT-e12", 11, SKU_A, ST, "vendor_return", "-1", ref="RPT-e8"),
    _m("RPT-b1", 2, SKU_B, ST, "receipt", "3", cost="1234.567", ref="PO-4"),
    _m("RPT-b2", 5, SKU_B, ST, "sale", "-1", ref="SO-3"),
]

# Period 2024-01-03 … 2024-01-07 (end of day): (sku, location, method) → exact figures.
PERIOD = ("2024-01-03", "2024-01-07")
EXPECTED_PERIOD = {
    (SKU_A, WH, "fifo"): dict(opening_value=D("86"), cost_of_goods_sold=D("-62"), transfers_out=D("-18"),
                              closing_value=D("6")),
    (SKU_A, ST, "fifo"): dict(opening_value=D("0"), transfers_in=D("18"), write_offs=D("-6"),
                              cost_of_goods_sold=D("-24"), receipts=D("35"), revaluations=D("-2"),
                              closing_value=D("21")),
    (SKU_A, WH, "avco"): dict(opening_value=D("86"), cost_of_goods_sold=D("-64.5"), transfers_out=D("-16.125"),
                              closing_value=D("5.375")),
    (SKU_A, ST, "avco"): dict(opening_value=D("0"), transfers_in=D("16.125"), write_offs=D("-5.375"),
                              cost_of_goods_sold=D("-21.5"), receipts=D("35"), revaluations=D("-3.25"),
                              closing_value=D("21")),
    (SKU_B, ST, "fifo"): dict(opening_value=D("3703.701"), cost_of_goods_sold=D("-1234.567"),
                              closing_value=D("2469.134")),
}

_seeded: set[str] = set()


def seed(warehouse, load_file_rows, dbt) -> None:
    """Load the history and build the marts, once per warehouse."""
    key = str(warehouse.settings.home)
    if key in _seeded:
        return
    load_file_rows("locations", [dict(location=WH, kind="warehouse", master_channel="file"),
                                 dict(location=ST, kind="store", master_channel="file")])
    load_file_rows("skus", [dict(sku=SKU_A, base_uom="EA", description="Report test widget"),
                            dict(sku=SKU_B, base_uom="EA", description="Report test gadget")])
    load_file_rows("uom_conversions", [dict(sku=SKU_A, uom="CS6", factor_to_base=D(6))])
    load_file_rows("movements", MOVEMENTS)
    dbt(*BUILD)
    _seeded.add(key)
