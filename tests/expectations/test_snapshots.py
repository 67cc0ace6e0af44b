"""Each suite's JSON in `expectations/snapshots/` matches its builder; `UPDATE_SNAPSHOTS=1` rewrites them.

The snapshots are what a reviewer reads in a diff: a changed rule shows up as a changed JSON file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from expectations import registry
from expectations.registry import SUITES, api_landing_specs

SNAPSHOTS = Path(registry.__file__).with_name("snapshots")
# The API landing contract is one builder for every channel table; its template instance is snapshotted.
SPECS = {**SUITES, **{s.name: s for s in api_landing_specs([("channel", "entity")])}}


def canonical(suite) -> str:
    doc = suite.to_json_dict()
    doc.pop("id", None)
    doc.get("meta", {}).pop("great_expectations_version", None)  # not a rule change
    for e in doc["expectations"]:
        e.pop("id", None)
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_suite_matches_snapshot(name):
    spec = SPECS[name]
    suite = spec.build()
    assert suite.name == name
    text = canonical(suite)
    path = SNAPSHOTS / f"{name}.json"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot for suite {name}; run with UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"suite {name} changed; if intended, rerun with UPDATE_SNAPSHOTS=1"


def test_no_orphan_snapshots():
    assert sorted(p.stem for p in SNAPSHOTS.glob("*.json")) == sorted(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_severity_matches_expectations(name):
    """A WARN suite holds only warning expectations (it must never raise an ERROR); an ERROR suite has a critical one."""
    spec = SPECS[name]
    severities = {e.severity for e in spec.build().expectations}
    if spec.severity == "WARN":
        assert severities == {"warning"}, severities
    else:
        assert "critical" in severities
