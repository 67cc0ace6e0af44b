"""Great Expectations suites for inventory-sync, as Python builders, and their registry.

Owns what "good data" means at each checked relation: every suite is built by a pure function (no
context, no connection), so it can be snapshotted, reviewed as JSON and run by the adapter in
`orchestration/lib/gx.py`. `expectations.registry` says which relation and Dagster asset each suite
guards, how severe a failure is and whether it gates corrections (DESIGN §9, I-5).
"""
