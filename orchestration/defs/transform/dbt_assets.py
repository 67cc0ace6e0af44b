"""Every dbt model, seed and test as Dagster assets and asset checks (one `dbt build` per run)."""

import json

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.lib.dbt import (
    PROJECT_FINGERPRINT,
    QUICK_BUILD_TAG,
    ensure_manifest,
    project_fingerprint,
    translator,
    view_models,
    views_to_keep,
)
from orchestration.lib.resources import WarehouseResource
from orchestration.lib.ui_metadata import relation_metadata

MANIFEST_PATH = ensure_manifest()
VIEWS = view_models(json.loads(MANIFEST_PATH.read_text()))


def _views_kept(context: dg.AssetExecutionContext, conn, fingerprint: str) -> list[str]:
    """A quick build's views that need no `create view` (orchestration.lib.dbt.views_to_keep)."""
    selected = {key: VIEWS[key] for key in context.selected_asset_keys if key in VIEWS}
    if not selected:
        return []
    present = {tuple(row) for row in conn.execute(
        "select schemaname::text, viewname::text from pg_views where schemaname = any(%s)",
        (sorted({schema for schema, _ in selected.values()}),)).fetchall()}
    fingerprints = {}
    for key in selected:
        event = context.instance.get_latest_materialization_event(key)
        value = event.asset_materialization.metadata.get(PROJECT_FINGERPRINT) if event and event.asset_materialization else None
        fingerprints[key] = getattr(value, "value", None)
    return views_to_keep(selected, fingerprints, present, fingerprint)


@dbt_assets(manifest=MANIFEST_PATH, dagster_dbt_translator=translator, name="warehouse_models")
def warehouse_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    """Builds staging → intermediate → marts, running each model's dbt tests as asset checks; every mart's
    materialization carries what a person reads instead of querying (row counts, drift, value).

    A quick build (runs tagged QUICK_BUILD_TAG: the quick sync jobs) leaves out the views whose relation
    exists and whose last build was made from the same project files (`dbt_project_fingerprint` on each
    view's materialization): a view reads its tables when queried, so creating it again changes nothing but
    costs a dbt node (about 2 s of a quick cycle for the 17 views). Any change to the project rebuilds them."""
    fingerprint = project_fingerprint()
    with warehouse.connect("transformer") as conn:
        conn.autocommit = True
        # No manifest.json / run_results.json per run (dbt writes the manifest twice, ~0.5 s): Dagster gets
        # every result from dbt's event stream, and the run's log has them all.
        args = ["build", "--no-write-json"]
        if context.run.tags.get(QUICK_BUILD_TAG) == "true":
            kept = _views_kept(context, conn, fingerprint)
            if kept:
                context.log.info(f"quick build: {len(kept)} unchanged views left as they are: {', '.join(kept)}")
                args += ["--exclude", " ".join(kept)]
        for event in dbt.cli(args, context=context).stream():
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                if key in VIEWS:
                    event = event.with_metadata({**event.metadata, PROJECT_FINGERPRINT: fingerprint})
                elif len(key.path) == 2 and key.path[0] == "marts":
                    event = event.with_metadata({**event.metadata, **relation_metadata(conn, *key.path)})
            yield event
