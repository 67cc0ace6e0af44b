"""Jobs over the whole asset graph."""

import dagster as dg

sync_inventory_job = dg.define_asset_job(
    "sync_inventory_job",
    # Every asset and every check, including checks on tables loaded outside Dagster (file imports).
    selection=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
    description="One sync cycle: extract every channel, build the warehouse models and run the checks.",
)
