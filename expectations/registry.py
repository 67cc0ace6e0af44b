"""The registry: every suite, the relation it validates, the Dagster asset it is a check on, how severe a
failure is, and whether it gates corrections.

`severity` is the worst a suite can report: ERROR suites contain `critical` expectations (a failure of
one of those is an ERROR) and may also contain `warning` ones (a failure of only those is a WARN, which
never blocks). `blocking=True` means the check is a Dagster blocking check and the push guard
(`orchestration.defs.quality.guard`) re-reads it before any correction leaves (DESIGN §9, I-5).
`max_shrink` enables the sharp-shrink rule: fail when the row count falls by more than that fraction
since the previous passing validation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import great_expectations as gx

from expectations import drift, ledger, raw, valuation
from expectations._common import DEFAULT_SCHEMAS, Schemas

Layer = Literal["raw", "staging", "intermediate", "marts"]


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    layer: Layer
    table: str
    asset_key: tuple[str, ...]
    severity: Literal["ERROR", "WARN"]
    blocking: bool
    description: str
    builder: Callable[..., gx.ExpectationSuite] = field(repr=False, compare=False)
    index_columns: tuple[str, ...] = ()  # identify failing rows of column-map expectations
    max_shrink: float | None = None

    @property
    def check_name(self) -> str:
        return f"gx_{self.name}"

    @property
    def asset_key_string(self) -> str:
        return "/".join(self.asset_key)

    def relation(self, schemas: Schemas = DEFAULT_SCHEMAS) -> tuple[str, str]:
        return schemas.as_dict()[self.layer], self.table

    def build(self, schemas: Schemas = DEFAULT_SCHEMAS) -> gx.ExpectationSuite:
        built = self.builder(schemas=schemas)
        if self.severity == "WARN":  # an advisory suite can never report an ERROR
            for expectation in built.expectations:
                expectation.severity = "warning"
        return built


# Drift suites are advisory: drift is what corrections fix (and uom drift waits in the review queue),
# so they warn; blocking them would stop the very pushes that remove the drift.
_STATIC = (
    SuiteSpec(
        name="channel_drift_within_tolerance",
        layer="marts", table="fct_channel_drift", asset_key=("marts", "fct_channel_drift"),
        severity="WARN", blocking=False,
        description="Drift classified lag/none lies within the channel's tolerance; drift = channel − expected.",
        builder=drift.channel_drift_within_tolerance,
        index_columns=drift.KEYS,
    ),
    SuiteSpec(
        name="channel_drift_uom",
        layer="marts", table="fct_channel_drift", asset_key=("marts", "fct_channel_drift"),
        severity="WARN", blocking=False,
        description="No drift row matches a pack factor (cases reported as eaches or the reverse).",
        builder=drift.channel_drift_uom,
        index_columns=drift.KEYS,
    ),
    SuiteSpec(
        name="ledger_uom_conversions",
        layer="intermediate", table="int_movements_unified", asset_key=("intermediate", "int_movements_unified"),
        severity="ERROR", blocking=True,
        description="UoM conversions round-trip exactly; each-counted SKUs move in whole units.",
        builder=ledger.ledger_uom_conversions,
        index_columns=("movement_id",),
    ),
    SuiteSpec(
        name="stock_positions_integrity",
        layer="marts", table="fct_stock_positions", asset_key=("marts", "fct_stock_positions"),
        severity="ERROR", blocking=True,
        description="Open FIFO layers sum to on-hand; values equal the valuation's changes; zero units, zero value.",
        builder=valuation.stock_positions_integrity,
        index_columns=("sku", "location"),
    ),
    SuiteSpec(
        name="valuation_integrity",
        layer="marts", table="fct_inventory_valuation", asset_key=("marts", "fct_inventory_valuation"),
        severity="ERROR", blocking=True,
        description="FIFO and AVCO value changes sum to the balance; zero balance, zero value; no negative costs.",
        builder=valuation.valuation_integrity,
        index_columns=("event_id", "sku", "location", "method"),
    ),
    SuiteSpec(
        name="cost_layers_integrity",
        layer="marts", table="fct_cost_layers", asset_key=("marts", "fct_cost_layers"),
        severity="ERROR", blocking=True,
        description="Open layers hold positive quantities at non-negative costs.",
        builder=valuation.cost_layers_integrity,
        index_columns=("sku", "location", "source_event_id", "layer_sequence"),
    ),
    SuiteSpec(
        name="negative_positions",
        layer="marts", table="fct_stock_positions", asset_key=("marts", "fct_stock_positions"),
        severity="WARN", blocking=False,
        description="Negative on-hand is allowed (channel data lags) but never hidden.",
        builder=valuation.negative_positions,
        index_columns=("sku", "location"),
    ),
    SuiteSpec(
        name="raw_file_movements_contract",
        layer="raw", table="file_movements", asset_key=("raw", "file", "movements"),
        severity="ERROR", blocking=True,
        description="Landed file movements: non-null, finite, in range, known types; no sharp shrink. "
        "Unknown units and staleness warn.",
        builder=raw.raw_file_movements_contract,
        index_columns=("source", "event_id"),
        max_shrink=0.5,
    ),
)


def api_landing_specs(tables: Iterable[tuple[str, str]]) -> list[SuiteSpec]:
    """One contract suite per API landing table `raw.<channel>_<entity>` (asset `raw/<channel>/<entity>`)."""
    return [
        SuiteSpec(
            name=f"raw_{channel}_{entity}_contract",
            layer="raw", table=f"{channel}_{entity}", asset_key=("raw", channel, entity),
            # ERROR for a broken contract or a sharp shrink; not blocking: the downstream gates catch
            # what reaches the ledger, and the landing tables of other channels must keep building.
            severity="ERROR", blocking=False,
            description=f"Landed {channel} {entity}: one JSON object per unique source id; no sharp shrink; fresh.",
            builder=partial(raw.raw_api_landing_contract, f"{channel}_{entity}"),
            index_columns=("source_id",),
            max_shrink=0.5,
        )
        for channel, entity in sorted(tables)
    ]


def channel_tables() -> list[tuple[str, str]]:
    """(channel, entity) of every API landing table in the channel registry; none if it cannot be read."""
    try:
        from orchestration.lib.registry import load_registry

        return [(name, entity) for name, cfg in load_registry().channels.items() for entity in cfg.entities]
    except Exception:  # noqa: BLE001 - the registry belongs to the extract stage; checks must still load
        return []


def all_suites(tables: Iterable[tuple[str, str]] | None = None) -> dict[str, SuiteSpec]:
    specs = [*_STATIC, *api_landing_specs(channel_tables() if tables is None else tables)]
    return {s.name: s for s in specs}


SUITES: Mapping[str, SuiteSpec] = {s.name: s for s in _STATIC}
