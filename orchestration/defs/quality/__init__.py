"""Definitions of the quality stage.

`checks.py` turns every suite in `expectations.registry` into an `@asset_check` named `gx_<suite>` on
the suite's asset (blocking where the registry says so); suites whose asset is not in the graph are
skipped so the definitions always load. `guard.py` is what the push job calls before writing anything:
it re-reads the latest evaluations of the blocking checks from the Dagster instance, because Dagster's
blocking does not cross runs (reliability.md §2.5, DESIGN §9 I-5).
"""
