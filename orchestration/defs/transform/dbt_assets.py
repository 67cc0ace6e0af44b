"""Every dbt model, seed and test as Dagster assets and asset checks (one `dbt build` per run)."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.lib.dbt import ensure_manifest, translator
from orchestration.lib.resources import WarehouseResource
from orchestration.lib.ui_metadata import relation_metadata


@dbt_assets(manifest=ensure_manifest(), dagster_dbt_translator=translator, name="warehouse_models")
def warehouse_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    """Builds staging → intermediate → marts, running each model's dbt tests as asset checks; every mart's
    materialization carries what a person reads instead of querying (row counts, drift, value)."""
    with warehouse.connect("transformer") as conn:
        conn.autocommit = True
        for event in dbt.cli(["build"], context=context).stream():
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                if len(key.path) == 2 and key.path[0] == "marts":
                    event = event.with_metadata({**event.metadata, **relation_metadata(conn, *key.path)})
            yield event
