"""Suite on `intermediate.int_movements_unified`: the one UoM conversion (STYLE rule 4) loses nothing."""

from __future__ import annotations

from collections.abc import Sequence

import great_expectations as gx

from expectations._common import (
    DEFAULT_SCHEMAS,
    Schemas,
    finite,
    not_null,
    not_null_between,
    rows,
    sql,
    suite,
)

# Units that count whole items; a fractional quantity in one of them is a UoM mix-up, not a real count.
EACH_UOMS = ("EA",)


def ledger_uom_conversions(schemas: Schemas = DEFAULT_SCHEMAS, each_uoms: Sequence[str] = EACH_UOMS) -> gx.ExpectationSuite:
    each = ", ".join(f"'{u}'" for u in each_uoms)
    return suite(
        "ledger_uom_conversions",
        [
            not_null(["movement_id", "sku", "location", "uom_source", "quantity_source", "quantity_base"]),
            not_null_between("factor_to_base", min_value=0, strict_min=True),
            finite(["quantity_source", "factor_to_base", "quantity_base", "unit_cost_base"], ["movement_id"]),
            rows(
                sql(
                    "select movement_id, sku, uom_source, quantity_source, factor_to_base, quantity_base from {batch}"
                    " where quantity_base <> quantity_source * factor_to_base"
                    " or quantity_base / factor_to_base <> quantity_source",
                    schemas,
                ),
                "conversions round-trip exactly: quantity_source * factor_to_base / factor_to_base = quantity_source",
            ),
            rows(
                sql(
                    "with u as (select * from {batch})"  # noqa: S608 - constant unit list below
                    " select u.movement_id, u.sku, s.base_uom, u.uom_source, u.quantity_source, u.quantity_base"
                    " from u inner join {staging}.stg_file__skus as s on s.sku = u.sku"
                    f" where (s.base_uom in ({each}) and u.quantity_base <> trunc(u.quantity_base))"
                    f" or (u.uom_source in ({each}) and u.quantity_source <> trunc(u.quantity_source))",
                    schemas,
                ),
                f"SKUs counted in eaches ({', '.join(each_uoms)}) move in whole units",
            ),
        ],
        meta={"relation": f"{schemas.intermediate}.int_movements_unified", "reference": "reliability.md §4.4 B-UOM"},
    )
