"""Stock positions (DESIGN §6) equal a plain Python fold of the ledger on generated histories: per SKU and
location in (occurred_at, event_id, source_name) order a count sets the balance and every other movement adds to it. Checks
the balance after every movement, which movement is a position's latest, and the folded position (on hand,
in transit, last count, last movement), exactly."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings

from tests.valuation.valuation_harness import history, load_histories

pytestmark = pytest.mark.integration


def _histories(n: int) -> list[list[dict]]:
    collected: list[list[dict]] = []

    @settings(max_examples=n)
    @given(history())
    def collect(rows):
        collected.append(rows)

    collect()
    return collected


def _fold(ledger: list[dict]) -> tuple[dict, dict]:
    """(balance after and is-latest per movement, the position per (sku, location)): the reference."""
    by_position: dict[tuple, list[dict]] = defaultdict(list)
    for row in ledger:
        by_position[row["sku"], row["location"]].append(row)
    received = {(r["sku"], r["reference"]) for r in ledger if r["movement_type"] == "transfer_in"}
    after, positions = {}, {}
    for key, rows in by_position.items():
        rows.sort(key=lambda r: (r["occurred_at"], r["event_id"], r["source_name"]))  # code point order
        balance = 0
        for row in rows:
            balance = row["quantity_base"] if row["movement_type"] == "physical_count" else balance + row["quantity_base"]
            after[row["movement_id"]] = (balance, row is rows[-1])
        counts = [r["occurred_at"] for r in rows if r["movement_type"] == "physical_count"]
        in_transit = -sum((r["quantity_base"] for r in rows if r["movement_type"] == "transfer_out"
                           and (r["sku"], r["reference"]) not in received), 0)
        positions[key] = (balance, in_transit, max(counts, default=None), rows[-1]["occurred_at"])
    return after, positions


def test_positions_equal_a_fold_of_the_ledger(warehouse, dbt, load_file_rows):
    skus = load_histories(load_file_rows, _histories(60))
    prefix = skus[0].rsplit("-", 1)[0] + "-%"
    dbt("run", "--select", "+int_stock_positions_folded")
    with warehouse.connect("transformer") as conn, conn.cursor() as cur:
        cur.execute("select movement_id, sku, location, occurred_at, event_id, source_name, movement_type, quantity_base, reference"
                    " from intermediate.int_movements_unified where sku like %s", (prefix,))
        names = [d.name for d in cur.description]
        ledger = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        cur.execute("select movement_id, balance_after, is_latest from intermediate.int_stock_balances_running"
                    " where sku like %s", (prefix,))
        after = {m: (b, latest) for m, b, latest in cur.fetchall()}
        cur.execute("select sku, location, on_hand_quantity, in_transit_quantity, last_counted_at, last_movement_at"
                    " from intermediate.int_stock_positions_folded where sku like %s", (prefix,))
        positions = {(s, loc): tuple(rest) for s, loc, *rest in cur.fetchall()}
    assert ledger and any(r["movement_type"] == "physical_count" for r in ledger)  # the fold has counts to reset on
    expected_after, expected_positions = _fold(ledger)
    assert after == expected_after
    assert positions == expected_positions
