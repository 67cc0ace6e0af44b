"""One Dagster asset check per registered GX suite (`gx_<suite>`), generated from `expectations.registry`.

A suite is only turned into a check when its asset key is defined by another stage (dbt models, raw
landing tables…): an asset check on an unknown key would stop the whole code location from loading,
and some marts land later than their suites. `SKIPPED_SUITES` says which ones were left out.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping

import dagster as dg

import orchestration.defs
from expectations._common import DEFAULT_SCHEMAS, Schemas
from expectations.registry import SuiteSpec, all_suites
from orchestration.lib.gx import run_check
from orchestration.lib.resources import WarehouseResource


def defined_asset_keys(package=orchestration.defs, exclude: str = __package__) -> set[dg.AssetKey]:
    """Asset keys defined by the other stages' modules: what `dg.load_defs` will put in the graph."""
    keys: set[dg.AssetKey] = set()

    def collect(obj) -> None:
        if isinstance(obj, dg.AssetsDefinition):
            keys.update(obj.keys)
        elif isinstance(obj, dg.AssetSpec):
            keys.add(obj.key)
        elif type(obj) in (list, tuple):  # not NamedTuple-like records (jobs are)
            for item in obj:
                collect(item)

    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name == exclude or info.name.startswith(exclude + "."):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            collect(value)
    return keys


ADVISORY_PRIORITY = "-10"


def build_gx_check(spec: SuiteSpec, schemas: Schemas = DEFAULT_SCHEMAS) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(list(spec.asset_key)),
        name=spec.check_name,
        blocking=spec.blocking,
        # An advisory check gates nothing: it runs after every step a run can start instead (the pushes
        # included), off the path from an event to its correction. Blocking checks keep their place.
        op_tags={} if spec.blocking else {"dagster/priority": ADVISORY_PRIORITY},
        description=f"{spec.description} (GX suite `{spec.name}`, {spec.severity}{', blocking' if spec.blocking else ''})",
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        return run_check(spec, warehouse, schemas=schemas)

    return _check


def build_gx_checks(
    specs: Mapping[str, SuiteSpec], available: Iterable[dg.AssetKey]
) -> tuple[list[dg.AssetChecksDefinition], list[str]]:
    present = set(available)
    built, skipped = [], []
    for spec in specs.values():
        if dg.AssetKey(list(spec.asset_key)) in present:
            built.append(build_gx_check(spec))
        else:
            skipped.append(spec.name)
    return built, skipped


gx_checks, SKIPPED_SUITES = build_gx_checks(all_suites(), defined_asset_keys())
# The blocking checks that exist in this code location: exactly what the push guard must see pass.
BLOCKING_CHECK_KEYS: list[dg.AssetCheckKey] = [
    dg.AssetCheckKey(dg.AssetKey(list(spec.asset_key)), spec.check_name)
    for spec in all_suites().values()
    if spec.blocking and spec.name not in SKIPPED_SUITES
]
