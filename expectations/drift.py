"""Suites on `marts.fct_channel_drift`: drift the classifier called harmless must be within tolerance,
and unit-of-measure mix-ups (cases sent as eaches or the reverse) must not reach a push (DESIGN §8)."""

from __future__ import annotations

import great_expectations as gx

from expectations._common import (
    CRITICAL,
    DEFAULT_SCHEMAS,
    Schemas,
    finite,
    not_null,
    not_null_between,
    not_null_in_set,
    rows,
    sql,
    suite,
)

DRIFT_CLASSES = ("lag", "uom", "missed_event", "unexplained", "none")
KEYS = ("channel", "sku", "location", "snapshot_at")
QUANTITIES = ("channel_quantity", "expected_quantity", "drift_quantity", "drift_value", "tolerance_quantity")


def channel_drift_within_tolerance(schemas: Schemas = DEFAULT_SCHEMAS) -> gx.ExpectationSuite:
    """Rows classified `lag` or `none` lie within the channel's tolerance; the drift arithmetic holds.

    A `lag`/`none` row beyond tolerance is a misclassification: the planner would leave a wrong
    channel count alone, or treat a real loss as noise. Rows waiting for their master's feed to be read
    (`is_feed_behind`) are lag by rule, whatever their drift.
    """
    return suite(
        "channel_drift_within_tolerance",
        [
            not_null([*KEYS, "channel_quantity", "expected_quantity", "drift_quantity"]),
            not_null_in_set("drift_class", DRIFT_CLASSES),
            not_null_between("tolerance_quantity", min_value=0),
            finite(QUANTITIES, KEYS),
            rows(
                sql(
                    "select channel, sku, location, snapshot_at, drift_class, drift_quantity, tolerance_quantity"
                    " from {batch} where drift_class in ('lag', 'none') and not is_feed_behind"
                    " and abs(drift_quantity) > tolerance_quantity",
                    schemas,
                ),
                "drift classified lag/none is within the channel's tolerance: abs(drift_quantity) <= tolerance_quantity"
                " (unless the master's feed is not read up to its snapshot yet)",
            ),
            rows(
                sql(
                    "select channel, sku, location, snapshot_at, channel_quantity, expected_quantity, drift_quantity"
                    " from {batch} where drift_quantity <> channel_quantity - expected_quantity",
                    schemas,
                ),
                "drift_quantity = channel_quantity - expected_quantity",
            ),
        ],
        meta={"relation": f"{schemas.marts}.fct_channel_drift", "invariant": "I-5"},
    )


def channel_drift_uom(schemas: Schemas = DEFAULT_SCHEMAS) -> gx.ExpectationSuite:
    """No drift row matches a pack factor: a channel reporting cases as eaches (or the reverse) is a
    mapping error for a person to fix, never something to "correct" by pushing a count (B-UOM)."""
    return suite(
        "channel_drift_uom",
        [
            not_null_in_set("drift_class", DRIFT_CLASSES),
            rows(
                sql(
                    "select channel, sku, location, snapshot_at, channel_quantity, expected_quantity,"
                    " pack_factor_matched, drift_class from {batch}"
                    " where pack_factor_matched is not null or drift_class = 'uom'",
                    schemas,
                ),
                "no drift is explained by a pack factor (cases reported as eaches or the reverse)",
                CRITICAL,
            ),
        ],
        meta={"relation": f"{schemas.marts}.fct_channel_drift", "reference": "reliability.md §4.4 B-UOM"},
    )
