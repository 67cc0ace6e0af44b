"""The file channel's landing tables, declared so lineage starts at them (loaded by `inventory-sync import`)."""

import dagster as dg

from orchestration.lib.raw import FILE_TABLES

file_sources = [
    dg.AssetSpec(
        key=["raw", "file", kind],
        group_name="extract",
        kinds={"postgres", "csv"},
        description=f"raw.file_{kind}: {kind.replace('_', ' ')} imported from CSV with `inventory-sync import {kind} PATH`; "
        "bad rows go to ops.quarantine with a reason.",
    )
    for kind in FILE_TABLES
]
