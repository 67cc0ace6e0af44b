"""Jobs over the whole asset graph."""

import dagster as dg

sync_inventory_job = dg.define_asset_job(
    "sync_inventory_job",
    selection=dg.AssetSelection.all(),
    description="One sync cycle: extract every channel, build the warehouse models and run the checks.",
)
