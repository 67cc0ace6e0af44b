"""Suites on the raw landing tables: the loader's contract, re-checked where the data lands.

Hard contract violations (nulls, NaN/Infinity, out-of-range numbers, a table that shrank sharply
since the last passing validation) are `critical`. Things the ledger already handles by quarantine
(an unknown UoM, I-6) or that only say "late" (freshness) are `warning`: visible, never blocking.

Shrink detection uses the suite parameter `min_row_count`, filled in at run time by the adapter from
the row count of the previous passing validation, so the suite itself stays static (and snapshotable).
"""

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

MOVEMENT_TYPES = (
    "receipt", "sale", "customer_return", "vendor_return", "transfer_out", "transfer_in", "adjustment", "damage", "physical_count",
)
MAX_ABS = 1e12  # B-HUGE: the loader's CHECK (abs(quantity) < 1e12)
MIN_ROW_COUNT = {"$PARAMETER": "min_row_count"}


def _freshness(max_lag_seconds: int) -> gxe.UnexpectedRowsExpectation:
    # An empty table has no newest row: max() is null, and that counts as stale too.
    return rows(
        "select max(loaded_at) as newest_loaded_at, count(*) as row_count from {batch}"  # noqa: S608 - an int below
        f" having max(loaded_at) is null or max(loaded_at) < now() - interval '{int(max_lag_seconds)} seconds'",
        f"the newest row was loaded within the sync-lag target ({int(max_lag_seconds)} s)",
        WARNING,
    )


def _no_sharp_shrink() -> gxe.ExpectTableRowCountToBeBetween:
    return gxe.ExpectTableRowCountToBeBetween(
        min_value=MIN_ROW_COUNT,
        description="the table did not shrink sharply since the previous passing validation",
    )


def raw_file_movements_contract(schemas: Schemas = DEFAULT_SCHEMAS, max_lag_seconds: int = 86_400) -> gx.ExpectationSuite:
    keys = ["source", "event_id"]
    return suite(
        "raw_file_movements_contract",
        [
            not_null(["source", "event_id", "occurred_at", "sku", "location", "uom", "batch_id", "loaded_at"]),
            not_null_in_set("movement_type", MOVEMENT_TYPES),
            not_null_between("quantity", -MAX_ABS, MAX_ABS, strict_min=True, strict_max=True),
            # unit_cost is optional except on receipts (DESIGN §5); where present it is in range.
            gxe.ExpectColumnValuesToBeBetween(column="unit_cost", min_value=0, max_value=MAX_ABS, strict_max=True),
            finite(["quantity", "unit_cost"], keys),
            rows(
                sql("select source, event_id, movement_type, quantity, unit_cost from {batch}"
                    " where movement_type = 'receipt' and (unit_cost is null or quantity <= 0)", schemas),
                "receipts carry a unit cost and a positive quantity (B-NEG)",
            ),
            _no_sharp_shrink(),
            rows(
                sql(
                    "with m as (select * from {batch})"
                    " select m.source, m.event_id, m.sku, m.uom from m"
                    " where not exists (select 1 from {raw}.file_skus as s where s.sku = m.sku and upper(s.base_uom) = upper(m.uom))"
                    " and not exists (select 1 from {raw}.file_uom_conversions as c"
                    " where upper(c.uom) = upper(m.uom) and (c.sku = m.sku or coalesce(c.sku, '') = ''))",
                    schemas,
                ),
                "every movement's unit is the SKU's base unit or has a conversion (unknown units are quarantined)",
                WARNING,
            ),
            _freshness(max_lag_seconds),
        ],
        meta={"relation": f"{schemas.raw}.file_movements", "reference": "reliability.md §2.8, §4.4 B-NAN/B-UOM/B-HUGE"},
    )


def raw_api_landing_contract(table: str, schemas: Schemas = DEFAULT_SCHEMAS, max_lag_seconds: int = 900) -> gx.ExpectationSuite:
    """The contract of every `raw.<channel>_<entity>` table: one JSON object per source record."""
    return suite(
        f"raw_{table}_contract",
        [
            not_null(["source_id", "payload", "batch_id", "loaded_at"]),
            gxe.ExpectColumnValuesToBeUnique(column="source_id"),
            rows(
                sql("select source_id, jsonb_typeof(payload) as payload_type from {batch} where jsonb_typeof(payload) <> 'object'", schemas),
                "every payload is a JSON object",
            ),
            _no_sharp_shrink(),
            _freshness(max_lag_seconds),
        ],
        meta={"relation": f"{schemas.raw}.{table}"},
    )
