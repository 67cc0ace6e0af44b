"""The GX checks inside Dagster, and the push gate across runs (DESIGN §9 I-5, reliability.md §2.5).

Run 1 materializes the asset with its blocking check; the push gate runs later in a *separate* run on
the same instance, where Dagster's own blocking no longer applies, and must refuse on its own.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import dagster as dg
import pytest

from expectations.registry import SUITES
from orchestration.defs.quality.checks import build_gx_check, build_gx_checks
from orchestration.defs.quality.guard import BlockingCheckFailed, assert_blocking_checks_passed
from orchestration.lib.resources import WarehouseResource

DRIFT = dg.AssetKey(["marts", "fct_channel_drift"])
CHECK = dg.AssetCheckKey(DRIFT, "gx_channel_drift_within_tolerance")
NOW = datetime.now(UTC)
COLUMNS = (
    "channel text, sku text, location text, snapshot_at timestamptz, channel_quantity numeric, expected_quantity numeric,"
    " drift_quantity numeric, drift_value numeric, drift_class text, persisted_seconds numeric,"
    " tolerance_quantity numeric, pack_factor_matched numeric, is_feed_behind boolean"
)
GOOD = [("shopify", "A", "L1", NOW, 10, 9, 1, 2, "lag", 30, 2, None, False)]
BAD = GOOD + [("shopify", "B", "L1", NOW, 30, 10, 20, 40, "lag", 30, 2, None, False)]


@dg.asset(key=DRIFT)
def fct_channel_drift() -> None:
    """Stands in for the dbt model; the rows are written by the test."""


@dg.op
def push_gate(context) -> None:
    assert_blocking_checks_passed(context.instance, [DRIFT], check_keys=[CHECK])


@dg.job
def push_job():
    push_gate()


def _critical(builder):
    def build(schemas):
        suite = builder(schemas=schemas)
        for expectation in suite.expectations:
            expectation.severity = "critical"
        return suite

    return build


@pytest.fixture
def env(warehouse, scratch, session_settings):
    # The gate mechanism on a suite made blocking with ERROR severity (the shipped drift suites are advisory).
    spec = dataclasses.replace(SUITES["channel_drift_within_tolerance"], severity="ERROR", blocking=True,
                               builder=_critical(SUITES["channel_drift_within_tolerance"].builder))
    check = build_gx_check(spec, schemas=scratch)
    resources = {"warehouse": WarehouseResource(home=str(session_settings.home))}
    return dg.DagsterInstance.ephemeral(), check, resources


def _push(instance) -> dg.ExecuteInProcessResult:
    return push_job.execute_in_process(instance=instance, raise_on_error=False)


def test_failing_blocking_check_is_an_error_and_the_gate_refuses_in_a_separate_run(env, table):
    instance, check, resources = env
    assert check.check_specs_by_output_name and all(s.blocking for s in check.check_specs)

    table("marts", "fct_channel_drift", COLUMNS, BAD)
    result = dg.materialize([fct_channel_drift, check], instance=instance, resources=resources, raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed is False and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["failing_row_count"].value == 1
    assert [r["sku"] for r in evaluation.metadata["failing_rows"].value] == ["B"]

    pushed = _push(instance)
    assert not pushed.success
    assert "failed with ERROR severity" in str(pushed.failure_data_for_node("push_gate").error)

    # The data is fixed and re-checked in another run: the gate opens.
    table("marts", "fct_channel_drift", COLUMNS, GOOD)
    result = dg.materialize([fct_channel_drift, check], instance=instance, resources=resources)
    assert result.get_asset_check_evaluations()[0].passed
    assert _push(instance).success

    # New data that nobody checked yet: the earlier pass no longer counts.
    dg.materialize([fct_channel_drift], instance=instance, resources=resources)
    with pytest.raises(BlockingCheckFailed, match="older than the latest materialization"):
        assert_blocking_checks_passed(instance, [DRIFT], check_keys=[CHECK])


def test_gate_refuses_a_check_that_never_ran():
    with pytest.raises(BlockingCheckFailed, match="never evaluated"):
        assert_blocking_checks_passed(dg.DagsterInstance.ephemeral(), [DRIFT], check_keys=[CHECK])


def test_checks_are_only_generated_for_assets_in_the_graph():
    checks, skipped = build_gx_checks(SUITES, [DRIFT])
    names = sorted(k.name for c in checks for k in c.check_keys)
    assert names == ["gx_channel_drift_uom", "gx_channel_drift_within_tolerance"]
    assert "valuation_integrity" in skipped and "channel_drift_uom" not in skipped


def test_definitions_load_with_the_gx_checks(warehouse, session_settings):
    from orchestration.definitions import build_definitions
    from orchestration.defs.quality.checks import SKIPPED_SUITES

    graph = build_definitions(session_settings).resolve_asset_graph()
    names = {k.name for k in graph.asset_check_keys}
    for spec in SUITES.values():
        assert (spec.check_name in names) != (spec.name in SKIPPED_SUITES)
