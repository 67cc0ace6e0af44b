"""Every suite against real PostgreSQL: data that passes, and data that fails on exactly the bad rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

NOW = datetime.now(UTC)
DRIFT_COLUMNS = (
    "channel text, sku text, location text, snapshot_at timestamptz, channel_quantity numeric, expected_quantity numeric,"
    " drift_quantity numeric, drift_value numeric, drift_class text, persisted_seconds numeric,"
    " tolerance_quantity numeric, pack_factor_matched numeric, is_feed_behind boolean"
)
GOOD_DRIFT = [
    ("shopify", "A", "L1", NOW, 10, 9, 1, 2, "lag", 30, 2, None, False),
    ("square", "A", "L1", NOW, 5, 5, 0, 0, "none", 0, 0, None, False),
    ("amazon", "B", "L1", NOW, 20, 5, 15, 30, "unexplained", 600, 2, None, False),  # beyond tolerance, but not called harmless
]


def failing(outcome, description_part: str) -> list[dict]:
    """The sampled failing rows of the one failed expectation whose description contains `description_part`."""
    matches = [f for f in outcome.failures if description_part in f.description]
    assert len(matches) == 1, [f.description for f in outcome.failures]
    return matches[0].sample


def keys(rows, *names):
    return sorted(tuple(r[n] for n in names) for r in rows)


def test_drift_within_tolerance_passes(table, run):
    table("marts", "fct_channel_drift", DRIFT_COLUMNS, GOOD_DRIFT)
    outcome = run("channel_drift_within_tolerance")
    assert outcome.success, outcome.failures


def test_drift_beyond_tolerance_fails_on_exactly_those_rows(table, run):
    bad = [
        ("shopify", "B", "L1", NOW, 30, 10, 20, 40, "lag", 30, 2, None, False),
        ("square", "C", "L2", NOW, 1, 0, 1, 1, "none", 0, 0, None, False),
    ]
    waiting = [("shopify", "W", "L1", NOW, 30, 10, 20, 40, "lag", 30, 2, None, True)]  # its master's feed is behind
    table("marts", "fct_channel_drift", DRIFT_COLUMNS, GOOD_DRIFT + waiting)
    assert run("channel_drift_within_tolerance").success
    table("marts", "fct_channel_drift", DRIFT_COLUMNS, GOOD_DRIFT + bad)
    outcome = run("channel_drift_within_tolerance")
    # Advisory: drift is what corrections fix, so the suite warns and never blocks.
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.WARN
    assert len(outcome.failures) == 1
    assert keys(failing(outcome, "within the channel's tolerance"), "channel", "sku") == [("shopify", "B"), ("square", "C")]


def test_drift_nan_and_null_are_not_skipped(table, run):
    """B-NAN / §2.8: a NaN tolerance passes `min_value=0` in Postgres, a null is dropped by GX; both must fail."""
    rows = GOOD_DRIFT + [
        ("toast", "N", "L1", NOW, 1, 1, 0, 0, "none", 0, "NaN", None, False),
        ("toast", "M", "L1", NOW, 1, 1, 0, 0, "none", 0, None, None, False),
    ]
    table("marts", "fct_channel_drift", DRIFT_COLUMNS, rows)
    outcome = run("channel_drift_within_tolerance")
    assert keys(failing(outcome, "finite"), "sku") == [("N",)]
    nulls = [f for f in outcome.failures if f.expectation == "expect_column_values_to_not_be_null"]
    assert [r["sku"] for f in nulls for r in f.sample] == ["M"]


def test_drift_uom(table, run):
    table("marts", "fct_channel_drift", DRIFT_COLUMNS, GOOD_DRIFT)
    assert run("channel_drift_uom").success
    cases_as_eaches = ("shopify", "K", "L1", NOW, 2, 24, -22, -44, "uom", 60, 2, 12, False)
    table("marts", "fct_channel_drift", DRIFT_COLUMNS, GOOD_DRIFT + [cases_as_eaches])
    outcome = run("channel_drift_uom")
    # Advisory: uom corrections wait in the review queue; the suite names the SKUs and warns.
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.WARN
    assert keys(failing(outcome, "pack factor"), "channel", "sku") == [("shopify", "K")]


LEDGER_COLUMNS = (
    "movement_id text, sku text, location text, occurred_at timestamptz, movement_type text, quantity_base numeric,"
    " unit_cost_base numeric, uom_source text, factor_to_base numeric, quantity_source numeric"
)
GOOD_LEDGER = [
    ("f:1", "A", "L1", NOW, "receipt", 5, 2, "EA", 1, 5),
    ("f:2", "A", "L1", NOW, "receipt", 24, 0.5, "CS12", 12, 2),
    ("f:3", "K", "L1", NOW, "sale", -500, None, "KG", 1000, -0.5),
]


def _skus(table):
    table("staging", "stg_file__skus", "sku text, base_uom text, description text", [("A", "EA", "widget"), ("K", "G", "flour")])


def test_ledger_uom_passes(table, run):
    _skus(table)
    table("intermediate", "int_movements_unified", LEDGER_COLUMNS, GOOD_LEDGER)
    outcome = run("ledger_uom_conversions")
    assert outcome.success, outcome.failures


def test_ledger_uom_fails_on_fractional_eaches_and_lossy_conversions(table, run):
    _skus(table)
    bad = [
        ("f:4", "A", "L1", NOW, "sale", -1.5, None, "EA", 1, -1.5),  # half a widget
        ("f:5", "K", "L1", NOW, "receipt", 0.333333, 3, "CS3", 0.3333333333, 1),  # base rounded: 1 case ≠ 0.333333 g
    ]
    table("intermediate", "int_movements_unified", LEDGER_COLUMNS, GOOD_LEDGER + bad)
    outcome = run("ledger_uom_conversions")
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.ERROR
    assert keys(failing(outcome, "round-trip"), "movement_id") == [("f:5",)]
    assert keys(failing(outcome, "whole units"), "movement_id") == [("f:4",)]
    assert len(outcome.failures) == 2


VALUATION_COLUMNS = (
    "event_id text, sku text, location text, occurred_at timestamptz, movement_type text, method text,"
    " quantity_base numeric, unit_cost_applied numeric, stock_value_change numeric, revaluation_amount numeric,"
    " balance_quantity numeric, balance_value numeric"
)
T0, T1 = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
GOOD_VALUATION = [
    (e, "A", "L1", t, mt, m, q, c, dv, 0, bq, bv)
    for m in ("fifo", "avco")
    for (e, t, mt, q, c, dv, bq, bv) in [("e1", T0, "receipt", 10, 2, 20, 10, 20), ("e2", T1, "sale", -10, 2, -20, 0, 0)]
] + [
    (e, "A", "L2", T0, "receipt", m, 5, 3, 15, 0, 5, 15) for e, m in (("e3", "fifo"), ("e3", "avco"))
] + [
    (e, "N", "L1", T0, "sale", m, -3, 2, -6, 0, -3, -6) for e, m in (("e4", "fifo"), ("e4", "avco"))
]


def test_valuation_integrity(table, run):
    table("marts", "fct_inventory_valuation", VALUATION_COLUMNS, GOOD_VALUATION)
    assert run("valuation_integrity").success
    bad = [
        ("e5", "C", "L1", T0, "receipt", "fifo", 5, 2, 10, 0, 5, 12),  # balance 12 ≠ Σ changes 10
        ("e6", "D", "L1", T0, "adjustment", "avco", 0, 0, 0.01, 0, 0, 0.01),  # zero units carrying a cent
    ]
    table("marts", "fct_inventory_valuation", VALUATION_COLUMNS, GOOD_VALUATION + bad)
    outcome = run("valuation_integrity")
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.ERROR
    assert keys(failing(outcome, "sum to the final balance_value"), "sku", "method") == [("C", "fifo")]
    assert keys(failing(outcome, "zero units has exactly zero value"), "event_id") == [("e6",)]


LAYER_COLUMNS = (
    "sku text, location text, source_event_id text, layer_sequence int, quantity_remaining_base numeric,"
    " unit_cost_base numeric, layer_value numeric, received_at timestamptz"
)
POSITION_COLUMNS = (
    "sku text, location text, on_hand_quantity numeric, committed_quantity numeric, damaged_quantity numeric,"
    " in_transit_quantity numeric, available_quantity numeric, inventory_value_fifo numeric,"
    " inventory_value_avco numeric, unit_cost_avco numeric, as_of timestamptz"
)
GOOD_LAYERS = [("A", "L2", "e3", 1, 5, 3, 15, T0)]
GOOD_POSITIONS = [
    ("A", "L1", 0, 0, 0, 0, 0, 0, 0, 2, NOW),
    ("A", "L2", 5, 1, 0, 0, 4, 15, 15, 3, NOW),
    ("N", "L1", -3, 0, 0, 0, -3, -6, -6, 2, NOW),  # negative, no layers: allowed, warned
]


def test_cost_layers_integrity(table, run):
    table("marts", "fct_cost_layers", LAYER_COLUMNS, GOOD_LAYERS)
    assert run("cost_layers_integrity").success
    table("marts", "fct_cost_layers", LAYER_COLUMNS, GOOD_LAYERS + [("B", "L1", "r9", 1, 2, -1, -2, T0)])
    outcome = run("cost_layers_integrity")
    assert not outcome.success
    between = [f for f in outcome.failures if f.expectation == "expect_column_values_to_be_between"]
    assert [(r["sku"], r["source_event_id"]) for f in between for r in f.sample] == [("B", "r9")]
    assert keys(failing(outcome, "negative value"), "sku") == [("B",)]


def test_stock_positions_integrity(table, run):
    table("marts", "fct_inventory_valuation", VALUATION_COLUMNS, GOOD_VALUATION)
    table("marts", "fct_cost_layers", LAYER_COLUMNS, GOOD_LAYERS)
    table("marts", "fct_stock_positions", POSITION_COLUMNS, GOOD_POSITIONS)
    outcome = run("stock_positions_integrity")
    assert outcome.success, outcome.failures

    # Layers 1 unit short at A/L2; a zero position at Z/L1 that still carries value.
    table("marts", "fct_cost_layers", LAYER_COLUMNS, [("A", "L2", "e3", 1, 4, 3, 12, T0)])
    table("marts", "fct_stock_positions", POSITION_COLUMNS, GOOD_POSITIONS + [("Z", "L1", 0, 0, 0, 0, 0, 0.01, 0, 0, NOW)])
    outcome = run("stock_positions_integrity")
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.ERROR
    assert keys(failing(outcome, "open FIFO layers sum"), "sku", "location") == [("A", "L2")]
    assert keys(failing(outcome, "zero units has exactly zero value"), "sku") == [("Z",)]
    assert keys(failing(outcome, "stock value changes"), "sku") == [("Z",)]  # Z has no valuation rows


def test_negative_positions_warn(table, run):
    table("marts", "fct_stock_positions", POSITION_COLUMNS, GOOD_POSITIONS[:2])
    assert run("negative_positions").success
    table("marts", "fct_stock_positions", POSITION_COLUMNS, GOOD_POSITIONS)
    outcome = run("negative_positions")
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.WARN
    assert keys(failing(outcome, "below zero"), "sku", "location") == [("N", "L1")]


RAW_COLUMNS = (
    "source text, event_id text, occurred_at timestamptz, sku text, location text, movement_type text, quantity numeric,"
    " uom text, unit_cost numeric, currency text, reference text, batch_id text, loaded_at timestamptz"
)


def _raw_reference(table):
    table("raw", "file_skus", "sku text, base_uom text, description text, batch_id text, loaded_at timestamptz",
          [("A", "EA", None, "b", NOW)])
    table("raw", "file_uom_conversions", "sku text, uom text, factor_to_base numeric, batch_id text, loaded_at timestamptz",
          [("", "CS12", 12, "b", NOW)])


def _movement(i, *, qty=1, uom="EA", cost=None, kind="sale", loaded=NOW):
    return ("erp", f"m{i}", NOW, "A", "L1", kind, qty, uom, cost, "EUR", None, "b1", loaded)


def test_raw_file_movements_contract(table, run):
    _raw_reference(table)
    good = [_movement(1, qty=12, uom="CS12", cost=24, kind="receipt")] + [_movement(i, qty=-1) for i in range(2, 11)]
    table("raw", "file_movements", RAW_COLUMNS, good)
    outcome = run("raw_file_movements_contract")
    assert outcome.success, outcome.failures
    assert outcome.row_count == 10

    bad = [_movement(20, qty="NaN"), _movement(21, qty=5, kind="receipt"), _movement(22, uom="BOX")]
    table("raw", "file_movements", RAW_COLUMNS, good + bad)
    outcome = run("raw_file_movements_contract")
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.ERROR
    assert keys(failing(outcome, "finite"), "event_id") == [("m20",)]
    assert keys(failing(outcome, "receipts carry a unit cost"), "event_id") == [("m21",)]
    assert keys(failing(outcome, "conversion"), "event_id") == [("m22",)]


def test_raw_unknown_unit_and_staleness_only_warn(table, run):
    _raw_reference(table)
    stale = NOW - timedelta(days=3)
    table("raw", "file_movements", RAW_COLUMNS, [_movement(1, loaded=stale), _movement(2, uom="BOX", loaded=stale)])
    outcome = run("raw_file_movements_contract")
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.WARN
    assert {f.description.split(" ")[0] for f in outcome.failures} == {"every", "the"}  # unknown unit, freshness


def test_raw_sharp_shrink_fails_against_the_previous_passing_count(table, run):
    _raw_reference(table)
    rows = [_movement(i, qty=-1) for i in range(10)]
    table("raw", "file_movements", RAW_COLUMNS, rows)
    assert run("raw_file_movements_contract").success  # baseline: 10
    table("raw", "file_movements", RAW_COLUMNS, rows[:4])
    outcome = run("raw_file_movements_contract")
    assert not outcome.success and outcome.severity == dg.AssetCheckSeverity.ERROR
    assert outcome.min_row_count == 5 and outcome.row_count == 4
    # A failed load does not become the baseline: the table stays red until it is whole again.
    assert not run("raw_file_movements_contract").success
    table("raw", "file_movements", RAW_COLUMNS, rows)
    assert run("raw_file_movements_contract").success


def test_raw_api_landing_contract(table, run):
    cols = "source_id text, cursor_at timestamptz, payload jsonb, batch_id text, loaded_at timestamptz"
    table("raw", "chan_levels", cols, [("1", NOW, '{"available": 3}', "b", NOW), ("2", NOW, '{"available": 1}', "b", NOW)])
    assert run("raw_chan_levels_contract").success
    table("raw", "chan_levels", cols, [("1", NOW, '{"available": 3}', "b", NOW), ("2", NOW, "[1, 2]", "b", NOW)])
    outcome = run("raw_chan_levels_contract")
    assert keys(failing(outcome, "JSON object"), "source_id") == [("2",)]


def test_unreachable_warehouse_is_a_failed_error_not_a_crash(tmp_path):
    from expectations.registry import SUITES
    from orchestration.lib.gx import run_suite

    spec = SUITES["channel_drift_uom"]
    outcome = run_suite(spec, "postgresql+psycopg://nobody:x@127.0.0.1:1/none", tmp_path, build_docs=False)
    assert not outcome.success and outcome.error and outcome.severity == dg.AssetCheckSeverity.ERROR


def test_check_result_metadata_and_data_docs(table, run, gx_home):
    from orchestration.lib.gx import MAX_FAILING_ROWS, to_check_result

    many = [("shopify", f"S{i:03}", "L1", NOW, 30, 0, 30, 60, "lag", 1, 1, None, False) for i in range(50)]
    table("marts", "fct_channel_drift", DRIFT_COLUMNS, many)
    outcome = run("channel_drift_within_tolerance", build_docs=True)
    result = to_check_result(outcome)
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.WARN
    assert result.check_name == "gx_channel_drift_within_tolerance"
    assert result.metadata["failing_row_count"].value == 50
    assert len(result.metadata["failing_rows"].value) == MAX_FAILING_ROWS
    assert result.metadata["suite"].value == "channel_drift_within_tolerance"
    assert (gx_home / "gx" / "data_docs" / "index.html").exists()


def test_a_suite_run_leaves_no_connection_open(table, run, warehouse):
    """GX leaves its engines' connections to garbage collection; a long-lived process (the demo, the bench)
    that runs suites every cycle would pile them up until PostgreSQL refuses new ones."""
    import gc

    def open_connections() -> int:
        with warehouse.admin_connect() as conn:
            return conn.execute("select count(*) from pg_stat_activity where usename = %s",
                                (warehouse.role_name("transformer"),)).fetchone()[0]

    table("marts", "fct_channel_drift", DRIFT_COLUMNS, GOOD_DRIFT)
    gc.disable()  # what a busy process looks like: nothing collected in between
    try:
        before = open_connections()
        for _ in range(5):
            assert run("channel_drift_within_tolerance").success
        assert open_connections() == before
    finally:
        gc.enable()
