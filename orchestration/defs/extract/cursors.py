"""ops.extract_cursors as an asset: written by the extraction (with the rows it read), read by the drift model."""

import dagster as dg

extract_cursors = dg.AssetSpec(
    key=["ops", "extract_cursors"],
    group_name="extract",
    kinds={"postgres"},
    description="ops.extract_cursors: where each channel's extraction stands, per stream, moved in the same "
    "transaction as the rows it read. An ordered change feed's cursor carries read_to (read completely up to "
    "then); marts/fct_channel_drift reads it to tell a quiet feed from one not yet read up to a master's "
    "snapshot (the dbt source ops.extract_cursors).",
)
