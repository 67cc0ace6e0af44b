"""Every dbt model, seed and test as Dagster assets and asset checks (one `dbt build` per run)."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.lib.dbt import ensure_manifest, translator


@dbt_assets(manifest=ensure_manifest(), dagster_dbt_translator=translator, name="warehouse_models")
def warehouse_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Builds staging → intermediate → marts, running each model's dbt tests as asset checks."""
    yield from dbt.cli(["build"], context=context).stream()
