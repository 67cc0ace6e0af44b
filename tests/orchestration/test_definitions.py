"""The definitions load, and a sorted snapshot of asset keys, checks, jobs and sensors is stable.

After an intended change, refresh the snapshot with `UPDATE_SNAPSHOTS=1 pytest tests/orchestration`.
"""

from __future__ import annotations

import os
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.txt")


def describe(defs) -> str:
    graph = defs.resolve_asset_graph()
    lines = [f"asset {k.to_user_string()}" for k in sorted(graph.get_all_asset_keys(), key=lambda k: k.path)]
    lines += sorted(f"check {c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys)
    lines += sorted(f"job {j.name}" for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
    lines += sorted(f"sensor {s.name}" for s in defs.sensors or [])
    lines += sorted(f"schedule {s.name}" for s in defs.schedules or [])
    return "\n".join(lines) + "\n"


def test_definitions_snapshot(warehouse, session_settings):
    from orchestration.definitions import build_definitions

    defs = build_definitions(session_settings)
    text = describe(defs)
    if os.environ.get("UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), "definitions changed; if intended, rerun with UPDATE_SNAPSHOTS=1"


def test_every_asset_has_a_group_and_description(warehouse, session_settings):
    from orchestration.definitions import build_definitions

    graph = build_definitions(session_settings).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key


def test_quick_sync_job_rebuilds_what_corrections_and_blocking_checks_need_and_tests_the_outbound_marts(
        warehouse, session_settings, tmp_path):
    from dataclasses import replace

    import yaml

    from orchestration.definitions import build_definitions
    from orchestration.defs.quality.checks import BLOCKING_CHECK_KEYS
    from orchestration.defs.sync.factory import CORRECTIONS_KEY, QUICK_SYNC_JOB
    from orchestration.lib.registry import DEFAULT_REGISTRY

    registry = yaml.safe_load(DEFAULT_REGISTRY.read_text())
    for channel in registry["channels"].values():
        channel["enabled"] = True
    (tmp_path / "channels.yaml").write_text(yaml.safe_dump(registry))
    defs = build_definitions(replace(session_settings, channels_file=tmp_path / "channels.yaml"))
    full, quick = defs.resolve_job_def("sync_inventory_job"), defs.resolve_job_def(QUICK_SYNC_JOB)
    graph = defs.resolve_asset_graph()
    rebuilt = set(quick.asset_layer.selected_asset_keys)
    names = {key.to_user_string() for key in rebuilt}
    checks = set(quick.asset_layer.asset_graph.asset_check_keys)

    # Everything the corrections are planned from, and everything a blocking check guards, with their inputs.
    for key in [CORRECTIONS_KEY, *{check.asset_key for check in BLOCKING_CHECK_KEYS}]:
        needed = {key, *graph.get_ancestor_asset_keys(key)} & set(full.asset_layer.selected_asset_keys)
        assert needed <= rebuilt, sorted(k.to_user_string() for k in needed - rebuilt)
    assert {"marts/fct_channel_drift", "marts/fct_stock_positions", "marts/fct_cost_layers",
            "intermediate/int_valuation_entries_posted"} <= names
    # ... and not the marts nothing on the sync path reads.
    assert not {"marts/fct_stock_movements", "marts/fct_cost_of_goods", "marts/dim_skus"} & names
    assert set(BLOCKING_CHECK_KEYS) <= checks
    check_names = {f"{c.asset_key.to_user_string()}:{c.name}" for c in checks}
    assert "marts/fct_channel_drift:unique_combination_fct_channel_drift_channel__sku__location" in check_names
    assert not any(c.asset_key.path[0] in ("staging", "intermediate") and not c.name.startswith("gx_")
                   for c in checks), "the data tests of the large tables wait for the full build"
    assert len(checks) < len(full.asset_layer.asset_graph.asset_check_keys) / 3

    # The push gate counts exactly the tests the quick path leaves out by their last verdict.
    from orchestration.defs.quality.checks import gx_checks
    from orchestration.defs.sync.factory import Guards

    guards = Guards(blocking=tuple(BLOCKING_CHECK_KEYS), gx=tuple(k for c in gx_checks for k in c.check_keys))
    exempt = guards.left_to_full_build(graph)
    assert exempt and not exempt & checks
    advisory = set(guards.advisory)
    assert exempt | checks | advisory >= set(full.asset_layer.asset_graph.asset_check_keys) - {
        c for c in full.asset_layer.asset_graph.asset_check_keys if c.asset_key not in rebuilt}

    # The checks that gate nothing leave the quick path for a run of their own, after it.
    from orchestration.defs.sync.factory import ADVISORY_JOB

    assert advisory and not advisory & checks and not advisory & set(BLOCKING_CHECK_KEYS)
    assert {c.name for c in advisory} >= {"gx_channel_drift_uom", "gx_negative_positions"}
    advisory_job = defs.resolve_job_def(ADVISORY_JOB)
    assert set(advisory_job.asset_layer.asset_graph.asset_check_keys) == advisory
    assert not advisory_job.asset_layer.selected_asset_keys, "it checks the marts as they are, builds nothing"
    assert {c.asset_key for c in advisory} <= rebuilt

    # What the quick cycles leave is exactly what completes them: together they are a full build.
    from orchestration.defs.sync.factory import COMPLETE_QUICK_JOB

    complete = defs.resolve_job_def(COMPLETE_QUICK_JOB)
    rest = set(complete.asset_layer.selected_asset_keys)
    assert not rest & rebuilt, "nothing the quick cycle built is built again"
    assert rest | rebuilt == set(full.asset_layer.selected_asset_keys)
    assert {"marts/fct_stock_movements", "marts/fct_cost_of_goods", "marts/dim_skus"} <= {k.to_user_string() for k in rest}
    assert not any(k.path[0] in ("raw", "push") for k in rest), "no extraction, no push"
    rest_checks = set(complete.asset_layer.asset_graph.asset_check_keys)
    assert not rest_checks & checks
    assert rest_checks | checks == set(full.asset_layer.asset_graph.asset_check_keys)
    assert exempt <= rest_checks
