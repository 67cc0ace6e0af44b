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
