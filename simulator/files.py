"""The files a simulated retailer hands over: reference data, the ERP ledger, POS exports.

Reference CSVs and `movements.csv` (purchase/ERP ledger: receipts with unit costs, vendor returns)
use the canonical headers of DESIGN §5/§6.  TouchBistro and SumUp have no stock API (pos-apis.md
§2–3), so their stores' movements come as report exports in each system's own layout;
`FILE_SOURCE_MAPPINGS` tells the platform how to map each layout onto the canonical columns.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .world import Movement, World

CANONICAL_COLUMNS = (
    "event_id",
    "occurred_at",
    "sku",
    "location",
    "movement_type",
    "quantity",
    "uom",
    "unit_cost",
    "currency",
    "reference",
)

FILE_SOURCE_MAPPINGS: dict[str, dict[str, Any]] = {
    "touchbistro": {
        "file": "touchbistro_inventory_item_report.csv",
        "columns": {
            "Entry ID": "event_id",
            "Date": "occurred_at",
            "SKU": "sku",
            "Location": "location",
            "Change Type": "movement_type",
            "Qty Change": "quantity",
            "Unit": "uom",
            "Unit Cost": "unit_cost",
            "Reference": "reference",
        },
        "values": {
            "movement_type": {
                "Sale": "sale",
                "Refund": "customer_return",
                "Transfer In": "transfer_in",
                "Transfer Out": "transfer_out",
                "Adjustment": "adjustment",
                "Waste": "damage",
                "Stock Count": "physical_count",
                "Purchase": "receipt",
                "Return to Vendor": "vendor_return",
            },
            "uom": {"Each": "EA", "Case of 6": "CS6", "Case of 12": "CS12", "Case of 24": "CS24"},
        },
        "timestamp_format": "%m/%d/%Y %I:%M:%S %p",  # local US style, no zone in the export
        "timezone": "UTC",
        "negate_movement_types": [],  # quantities are already signed
        "constants": {"currency": "USD"},
        "ignored_columns": ["Item Name"],
    },
    "sumup": {
        "file": "sumup_stock_movements.csv",
        "columns": {
            "Movement ID": "event_id",
            "Transaction Date": "occurred_at",
            "Product SKU": "sku",
            "Outlet": "location",
            "Movement": "movement_type",
            "Quantity": "quantity",
            "Unit of Measure": "uom",
            "Cost Price": "unit_cost",
            "Reference": "reference",
        },
        "values": {
            "movement_type": {
                "SALE": "sale",
                "RETURN": "customer_return",
                "TRANSFER_IN": "transfer_in",
                "TRANSFER_OUT": "transfer_out",
                "ADJUST": "adjustment",
                "WASTAGE": "damage",
                "STOCKTAKE": "physical_count",
                "DELIVERY": "receipt",
                "SUPPLIER_RETURN": "vendor_return",
            },
            "uom": {"pcs": "EA", "case6": "CS6", "case12": "CS12", "case24": "CS24"},
        },
        "timestamp_format": "%Y-%m-%d %H:%M:%S",
        "timezone": "UTC",
        # SumUp exports outbound movements as positive numbers (the direction is in `Movement`);
        # ADJUST keeps its sign and STOCKTAKE is the counted level.
        "negate_movement_types": ["sale", "transfer_out", "damage", "vendor_return"],
        "constants": {"currency": "GBP"},
        "ignored_columns": [],
    },
}


def _csv(
    path: Path, header: list[str] | tuple[str, ...], rows: list[list[Any]] | list[dict[str, Any]]
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        if rows and isinstance(rows[0], dict):
            w = csv.DictWriter(fh, fieldnames=list(header))
            w.writeheader()
            w.writerows(rows)
        else:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
    return path


def _reverse(source: str, canonical: str) -> dict[str, str]:
    return {v: k for k, v in FILE_SOURCE_MAPPINGS[source]["values"][canonical].items()}


def _touchbistro_row(world: World, m: Movement) -> list[str]:
    types, uoms = _reverse("touchbistro", "movement_type"), _reverse("touchbistro", "uom")
    return [
        m.event_id,
        m.occurred_at.strftime(FILE_SOURCE_MAPPINGS["touchbistro"]["timestamp_format"]),
        world.catalog.sku(m.sku).description,
        m.sku,
        m.location,
        types[m.movement_type],
        str(m.quantity),
        uoms[m.uom],
        "" if m.unit_cost is None else f"{m.unit_cost:.2f}",
        m.reference,
    ]


def _sumup_row(m: Movement) -> list[str]:
    types, uoms = _reverse("sumup", "movement_type"), _reverse("sumup", "uom")
    negate = m.movement_type in FILE_SOURCE_MAPPINGS["sumup"]["negate_movement_types"]
    qty = -m.quantity if negate else m.quantity
    return [
        m.event_id,
        m.occurred_at.strftime(FILE_SOURCE_MAPPINGS["sumup"]["timestamp_format"]),
        m.sku,
        m.location,
        types[m.movement_type],
        str(qty),
        uoms[m.uom],
        "" if m.unit_cost is None else str(m.unit_cost),
        m.reference,
    ]


def write_files(world: World, directory: Path) -> dict[str, Path]:
    """Write every file source; return {name: path}.  Rows come in the order the source logged them."""
    directory.mkdir(parents=True, exist_ok=True)
    cat = world.catalog
    out = {
        "skus": _csv(
            directory / "skus.csv",
            ("sku", "base_uom", "description"),
            [[s.sku, s.base_uom, s.description] for s in cat.skus],
        ),
        "uom_conversions": _csv(
            directory / "uom_conversions.csv",
            ("sku", "uom", "factor_to_base"),
            [[s.sku, u, f] for s in cat.skus for u, f in sorted(s.packs.items())],
        ),
        "locations": _csv(
            directory / "locations.csv",
            ("location", "kind", "master_channel"),
            [[x.location, x.kind, x.master_channel] for x in cat.locations],
        ),
        "listings": _csv(
            directory / "listings.csv",
            ("channel", "channel_sku", "channel_location", "sku", "location"),
            [[x.channel, x.channel_sku, x.channel_location, x.sku, x.location] for x in cat.listings],
        ),
        "policies": _csv(
            directory / "policies.csv",
            ("channel", "safety_buffer", "percentage", "maximum", "minimum", "conflict_rule", "in_flight_seconds"),
            [
                [
                    p.channel,
                    p.safety_buffer,
                    p.percentage,
                    "" if p.maximum is None else p.maximum,
                    "" if p.minimum is None else p.minimum,
                    p.conflict_rule,
                    "" if p.in_flight_seconds is None else p.in_flight_seconds,
                ]
                for p in cat.policies
            ],
        ),
        "kit_components": _csv(
            directory / "kit_components.csv",
            ("kit_sku", "component_sku", "quantity_per_kit"),
            [list(k) for k in cat.kit_components],
        ),
        "movements": _csv(directory / "movements.csv", CANONICAL_COLUMNS, [m.row() for m in world.erp]),
    }
    tb = FILE_SOURCE_MAPPINGS["touchbistro"]
    out["touchbistro"] = _csv(
        directory / tb["file"],
        [
            "Entry ID",
            "Date",
            "Item Name",
            "SKU",
            "Location",
            "Change Type",
            "Qty Change",
            "Unit",
            "Unit Cost",
            "Reference",
        ],
        [_touchbistro_row(world, m) for m in world.pos_exports["touchbistro"]],
    )
    su = FILE_SOURCE_MAPPINGS["sumup"]
    out["sumup"] = _csv(
        directory / su["file"],
        [
            "Movement ID",
            "Transaction Date",
            "Product SKU",
            "Outlet",
            "Movement",
            "Quantity",
            "Unit of Measure",
            "Cost Price",
            "Reference",
        ],
        [_sumup_row(m) for m in world.pos_exports["sumup"]],
    )
    return out
