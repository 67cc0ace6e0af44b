"""Shared by the valuation tests: generated movement histories, loading them, and comparing the dbt
marts with the Python reference (tests/reference/valuation.py) row for row, exactly.

Each generated history is one SKU (with its own UoM conversions) so that any number of them load into
one database and value in one `dbt build`. Comparisons are exact `Decimal` equality on the unrounded
`numeric` values: no tolerance, not even to the cent.
"""

from __future__ import annotations

import decimal
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from tests.reference.valuation import Movement, value_movements

LOCATIONS = ("VAL-A", "VAL-B", "VAL-C")
# factor 3 and 0.5 make unit costs inexact after conversion (÷3) and quantities fractional
UOMS = {"EA": Decimal(1), "CS6": Decimal(6), "CS12": Decimal(12), "PK3": Decimal(3), "HALF": Decimal("0.5")}
SOURCES = ("erp", "wms")
T0 = datetime(2024, 1, 1, tzinfo=UTC)

VALUATION_BUILD = ("+fct_inventory_valuation", "+fct_cost_of_goods", "+fct_cost_layers")
# ... and the positions mart, whose values come from the same pass (compare(..., positions=True))
POSITIONS_BUILD = (*VALUATION_BUILD, "+fct_stock_positions")

costs = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("250"), places=2) | st.sampled_from(
    [Decimal("0"), Decimal("9.99"), Decimal("10"), Decimal("0.3333")]
)
quantities = st.integers(min_value=1, max_value=40).map(Decimal) | st.sampled_from(
    [Decimal("0.5"), Decimal("2.25")]
)


@st.composite
def history(draw) -> list[dict]:
    """One SKU's events as canonical file rows without `sku` (added at load): receipts at several costs,
    sales, customer returns (referencing sales, unreferenced, dangling), vendor returns, transfers
    (paired, one-sided, received before sent, short-received), damage, ± adjustments with and without
    cost, physical counts, zero quantities, timestamp ties and back-dated events, several UoMs."""
    n_steps = draw(st.integers(min_value=3, max_value=30))
    rows: list[dict] = []
    sales: list[str] = []
    receipts: list[str] = []
    ids = draw(st.lists(st.integers(0, 999), min_size=n_steps * 2, max_size=n_steps * 2, unique=True))
    minute = 0
    for step in range(n_steps):
        # mostly forward in time, sometimes back-dated, often on the same minute (ties by event_id)
        minute = draw(st.sampled_from([minute, minute + 1, minute + 7, max(0, minute - 30)]))
        at = T0 + timedelta(minutes=minute)
        kind = draw(
            st.sampled_from(
                ["receipt"] * 4
                + ["sale"] * 4
                + [
                    "customer_return",
                    "vendor_return",
                    "transfer",
                    "transfer",
                    "adjustment",
                    "damage",
                    "physical_count",
                ]
            )
        )
        eid = f"e{ids[2 * step]}"
        source = draw(st.sampled_from(SOURCES)) if draw(st.integers(0, 9)) == 0 else "erp"
        loc = draw(st.sampled_from(LOCATIONS))
        uom = draw(st.sampled_from(list(UOMS)))
        qty = draw(quantities) if draw(st.integers(0, 19)) else Decimal(0)
        row = dict(
            source=source,
            event_id=eid,
            occurred_at=at,
            location=loc,
            uom=uom,
            unit_cost=None,
            currency="EUR",
            reference=None,
        )
        if kind == "receipt":
            rows.append(
                {
                    **row,
                    "movement_type": "receipt",
                    "quantity": qty,
                    "unit_cost": draw(costs),
                    "reference": f"PO-{eid}",
                }
            )
            receipts.append(eid)
        elif kind == "sale":
            if sales and draw(st.integers(0, 5)) == 0:
                # another source reusing a sale's event_id: returns must prefer their own source's sale
                row = {**row, "event_id": draw(st.sampled_from(sales)), "source": "wms"}
            rows.append({**row, "movement_type": "sale", "quantity": -qty})
            sales.append(row["event_id"])
        elif kind == "customer_return":
            ref = draw(st.sampled_from([*sales, None, "e-missing"])) if sales else None
            rows.append(
                {
                    **row,
                    "source": draw(st.sampled_from(SOURCES)),
                    "movement_type": "customer_return",
                    "quantity": qty,
                    "reference": ref,
                }
            )
        elif kind == "vendor_return":
            ref = draw(st.sampled_from([*receipts, None])) if receipts else None
            rows.append({**row, "movement_type": "vendor_return", "quantity": -qty, "reference": ref})
        elif kind == "damage":
            rows.append({**row, "movement_type": "damage", "quantity": -qty})
        elif kind == "adjustment":
            sign = draw(st.sampled_from([1, -1]))
            cost = draw(st.none() | costs) if sign > 0 else None
            rows.append({**row, "movement_type": "adjustment", "quantity": sign * qty, "unit_cost": cost})
        elif kind == "physical_count":
            cost = draw(st.none() | costs)
            rows.append(
                {
                    **row,
                    "movement_type": "physical_count",
                    "quantity": draw(st.integers(0, 30)),
                    "uom": "EA",
                    "unit_cost": cost,
                }
            )
        else:
            ref = f"T{ids[2 * step]}"
            dest = draw(st.sampled_from([x for x in LOCATIONS if x != loc]))
            shape = draw(st.sampled_from(["pair", "pair", "in_first", "short", "out_only", "in_only"]))
            received = qty / 2 if shape == "short" else qty
            in_at = (
                at - timedelta(minutes=5)
                if shape == "in_first"
                else at + timedelta(minutes=draw(st.integers(0, 90)))
            )
            if shape != "in_only":
                rows.append({**row, "movement_type": "transfer_out", "quantity": -qty, "reference": ref})
            if shape != "out_only":
                rows.append(
                    {
                        **row,
                        "event_id": f"e{ids[2 * step + 1]}",
                        "occurred_at": in_at,
                        "location": dest,
                        "movement_type": "transfer_in",
                        "quantity": received,
                        "reference": ref,
                    }
                )
    return rows


def load_histories(load_file_rows, histories: list[list[dict]], prefix: str | None = None) -> list[str]:
    """Land the histories as distinct SKUs (with reference data); returns the SKU names."""
    prefix = prefix or f"VALHYP-{uuid.uuid4().hex[:8]}"
    skus = [f"{prefix}-{n:04d}" for n in range(len(histories))]
    load_file_rows(
        "locations", [dict(location=loc, kind="store", master_channel="file") for loc in LOCATIONS]
    )
    load_file_rows("skus", [dict(sku=s, base_uom="EA", description="valuation test") for s in skus])
    load_file_rows(
        "uom_conversions",
        [dict(sku=s, uom=u, factor_to_base=f) for s in skus for u, f in UOMS.items() if u != "EA"],
    )
    # event ids are unique per source across all SKUs, so each SKU's ids (and references) get its name
    movements = [
        {
            **row,
            "sku": sku,
            "event_id": f"{sku}/{row['event_id']}",
            "reference": row["reference"] and f"{sku}/{row['reference']}",
        }
        for sku, rows in zip(skus, histories, strict=True)
        for row in rows
    ]
    if movements:
        load_file_rows("movements", movements)
    return skus


def _fetch(conn, query: str, prefix: str) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(query, (prefix + "%",))
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def reference_for(conn, prefix: str):
    """The reference valuation of exactly the rows the ledger holds for these SKUs (after its mapping,
    UoM conversion and de-duplication, which are not the valuation's to re-implement)."""
    rows = _fetch(
        conn,
        "select movement_id, source_name, event_id, occurred_at, sku, location, movement_type, quantity_base,"
        " unit_cost_base, reference from intermediate.int_movements_unified where sku like %s",
        prefix,
    )
    return value_movements([Movement(**r) for r in rows])


VALUATION_COLUMNS = (
    "sku",
    "location",
    "valuation_sequence",
    "quantity_base",
    "counted_quantity_base",
    "unit_cost_applied",
    "stock_value_change",
    "revaluation_amount",
    "balance_quantity",
    "balance_value",
    "average_unit_cost",
    "in_transit_quantity",
    "in_transit_value",
)
LINE_COLUMNS = (
    "cost_kind",
    "issue_movement_id",
    "source_movement_id",
    "quantity_base",
    "unit_cost_base",
    "cost_amount",
    "provisional_unit_cost_base",
)
# (on_hand_quantity is the ledger's running balance, not the valuation's: test_positions_reference checks it)
POSITION_COLUMNS = ("inventory_value_fifo", "inventory_value_avco")
LAYER_COLUMNS = (
    "location",
    "source_movement_id",
    "received_movement_id",
    "quantity_remaining_base",
    "unit_cost_base",
)


def compare(conn, prefix: str, positions: bool = False) -> list[str]:
    """Every difference between the marts and the reference for SKUs starting with `prefix` (with
    `positions`, fct_stock_positions' values too: built with POSITIONS_BUILD)."""
    ref = reference_for(conn, prefix)
    problems: list[str] = []
    if not ref.movements:
        problems.append(f"nothing to compare: no movements for {prefix}")

    def diff(what: str, expected: dict, actual: dict, columns: tuple[str, ...]) -> None:
        for key in sorted(set(expected) | set(actual), key=str):
            e, a = expected.get(key), actual.get(key)
            if e is None or a is None:
                problems.append(f"{what} {key}: only in {'marts' if e is None else 'reference'}")
                continue
            for col in columns:
                if e[col] != a[col]:
                    problems.append(f"{what} {key} {col}: reference {e[col]!r} != marts {a[col]!r}")

    expected = {(m.movement_id, m.method): vars(m) for m in ref.movements}
    actual = {
        (r["movement_id"], r["method"]): r
        for r in _fetch(conn, "select * from marts.fct_inventory_valuation where sku like %s", prefix)
    }
    diff("valuation", expected, actual, VALUATION_COLUMNS)

    expected = {(x.booked_movement_id, x.method, x.line_sequence): vars(x) for x in ref.cost_lines}
    actual = {
        (r["booked_movement_id"], r["method"], r["line_sequence"]): r
        for r in _fetch(conn, "select * from marts.fct_cost_of_goods where sku like %s", prefix)
    }
    diff("cost line", expected, actual, LINE_COLUMNS)

    expected = {(x.sku, x.layer_sequence): vars(x) for x in ref.layers}
    actual = {
        (r["sku"], r["layer_sequence"]): r
        for r in _fetch(conn, "select * from marts.fct_cost_layers where sku like %s", prefix)
    }
    diff("layer", expected, actual, LAYER_COLUMNS)

    if positions:
        # each position's value: the balance after its last movement, per method
        closing: dict[tuple, dict] = {}
        for m in sorted(ref.movements, key=lambda m: m.valuation_sequence):
            row = closing.setdefault((m.sku, m.location), {})
            row[f"inventory_value_{m.method}"] = m.balance_value
        actual = {
            (r["sku"], r["location"]): r
            for r in _fetch(conn, "select * from marts.fct_stock_positions where sku like %s", prefix)
        }
        diff("position", closing, actual, POSITION_COLUMNS)
        for key, r in actual.items():
            cost = r["unit_cost_avco"]
            if not r["on_hand_quantity"] or cost is None:
                expected_cost = None
            else:  # value / on hand, to the scale PostgreSQL chose for the quotient
                wide = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_UP)
                expected_cost = wide.divide(r["inventory_value_avco"], r["on_hand_quantity"]).quantize(cost, context=wide)
            if cost != expected_cost:
                problems.append(f"position {key} unit_cost_avco: {cost!r}, value / on hand {expected_cost!r}")
    return problems
