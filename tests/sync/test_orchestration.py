"""The sync stage in Dagster: definitions resolve, a failing blocking check stops pushes in a separate
run (I-5), sensors evaluated twice request the same runs and a push run launched twice applies once
(F-SENSOR)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml

from orchestration.defs.extract.factory import (
    ChannelResource,
    build_extract_definitions,
    channel_resource_key,
)
from orchestration.defs.sync.factory import build_push_asset, build_sync_definitions, record_alert, source_key
from orchestration.lib.push import idempotency_key_for, plan_corrections
from orchestration.lib.registry import ChannelConfig, load_registry
from orchestration.lib.resources import WarehouseResource

from .conftest import TOKEN, applied_for_key, applied_total, correction_row, level, listing, status_of, unique

pytestmark = pytest.mark.integration


def write_registry(tmp_path: Path, sims, names: dict[str, str], monkeypatch) -> Path:
    channels = {}
    for name, client_name in names.items():
        env = f"SYNC_TEST_{name.upper()}_TOKEN"
        monkeypatch.setenv(env, TOKEN)
        channels[name] = {"client": client_name, "base_url": sims.base_urls[client_name], "token_env": env}
    path = tmp_path / "channels.yaml"
    path.write_text(yaml.safe_dump({"channels": channels}))
    return path


def resources(session_settings, sims, names: dict[str, str]) -> dict:
    res = {"warehouse": WarehouseResource(home=str(session_settings.home))}
    for name, client_name in names.items():
        res[channel_resource_key(name)] = ChannelResource(base_url=sims.base_urls[client_name], token=TOKEN)
    return res


def test_sync_definitions_resolve(tmp_path, sims, monkeypatch, sync_warehouse, session_settings):
    names = {"shopify": "shopify", "square": "square", "shiphero": "shiphero"}
    registry = load_registry(write_registry(tmp_path, sims, names, monkeypatch))
    defs = dg.Definitions.merge(build_extract_definitions(registry), build_sync_definitions(registry),
                                dg.Definitions(resources={"warehouse": WarehouseResource(home=str(session_settings.home))}))
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {"push_corrections_job", "reconcile_inventory_job", "refresh_square_job"} <= jobs
    push_job = defs.resolve_job_def("push_corrections_job")
    assert {k.to_user_string() for k in push_job.asset_layer.executable_asset_keys} == {
        f"push/{n}/stock_corrections" for n in names}
    refresh = defs.resolve_job_def("refresh_square_job")
    keys = {k.to_user_string() for k in refresh.asset_layer.executable_asset_keys}
    assert "raw/square/inventory_changes" in keys  # + dbt models and ops/corrections downstream in the full defs
    assert not any(k.startswith("push/") for k in keys)
    sensors = {s.name for s in defs.sensors}
    assert sensors == {"corrections_planned_sensor", "channel_changes_sensor", "webhook_events_sensor",
                       "sync_run_failure_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in defs.sensors)
    assert [s.name for s in defs.schedules] == ["nightly_reconciliation_schedule"]
    assert defs.schedules[0].cron_schedule == "0 2 * * *"


def test_failing_blocking_check_stops_the_push_in_a_separate_run(pusher, mart, sims, session_settings):
    """I-5 across runs: the check runs (and fails) in one run, the push is attempted in another."""
    name = unique("shopify")
    lst = listing(sims, "shopify", 8)
    now = level(sims, lst)
    row = correction_row(name, lst, now, now + 2)
    plan_corrections(pusher, name, mart([row]))
    verdict = {"passed": False}

    @dg.asset(key=source_key(name), group_name="marts")
    def source():
        return None

    @dg.asset_check(asset=source, blocking=True)
    def corrections_are_plausible():
        return dg.AssetCheckResult(passed=verdict["passed"])

    push = build_push_asset([ChannelConfig(name, "shopify", sims.base_urls["shopify"], "UNUSED")])
    assets = [source, corrections_are_plausible, push]
    res = resources(session_settings, sims, {name: "shopify"})
    before = applied_total(sims, "shopify")
    with dg.instance_for_test() as instance:
        never = dg.materialize(assets, selection=[push.key], instance=instance, resources=res, raise_on_error=False)
        assert not never.success  # never evaluated: refused
        checked = dg.materialize([source, corrections_are_plausible], instance=instance, raise_on_error=False)
        assert not checked.get_asset_check_evaluations()[0].passed
        refused = dg.materialize(assets, selection=[push.key], instance=instance, resources=res, raise_on_error=False)
        assert not refused.success
        failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
        assert "refusing to push" in failure.step_failure_data.error.message
        assert status_of(pusher, row["correction_id"]) == "planned"
        assert applied_total(sims, "shopify") == before

        verdict["passed"] = True
        dg.materialize([source, corrections_are_plausible], instance=instance)
        pushed = dg.materialize(assets, selection=[push.key], instance=instance, resources=res)
        assert pushed.success
    assert status_of(pusher, row["correction_id"]) == "applied"
    assert applied_total(sims, "shopify") - before == 1


def test_sensor_evaluated_twice_requests_one_run_and_two_runs_apply_once(
        pusher, mart, sims, session_settings, tmp_path, monkeypatch):
    name = unique("shopify")
    names = {name: "shopify"}
    registry = load_registry(write_registry(tmp_path, sims, names, monkeypatch))
    defs = build_sync_definitions(registry)
    lst = listing(sims, "shopify", 9)
    now = level(sims, lst)
    row = correction_row(name, lst, now, now + 1)
    plan_corrections(pusher, name, mart([row]))
    res = resources(session_settings, sims, names)
    sensor = next(s for s in defs.sensors if s.name == "corrections_planned_sensor")
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=res))
        second = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=res))
        assert first.run_requests and [r.run_key for r in first.run_requests] == [r.run_key for r in second.run_requests]
        assert first.cursor == second.cursor
        # Even if both requests became runs (Dagster #26753, #9360), the key is applied once.
        push = next(a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.key.path[0] == "push")
        source = dg.AssetSpec(source_key(name), group_name="marts")  # no blocking checks on it here
        for _ in range(2):
            assert dg.materialize([source, push], selection=[push.key], instance=instance, resources=res).success
    assert status_of(pusher, row["correction_id"]) == "applied"
    assert applied_for_key(sims, "shopify", idempotency_key_for(row["correction_id"]))["applied"] == 1


def test_channel_changes_sensor_is_deterministic_and_sees_new_changes(sims, session_settings, tmp_path,
                                                                      monkeypatch, sync_warehouse):
    name = unique("square")
    names = {name: "square"}
    defs = build_sync_definitions(load_registry(write_registry(tmp_path, sims, names, monkeypatch)))
    sensor = next(s for s in defs.sensors if s.name == "channel_changes_sensor")
    res = resources(session_settings, sims, names)
    with dg.instance_for_test() as instance:
        a = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=res))
        b = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=res))
        assert len(a.run_requests) == 1
        assert [r.run_key for r in a.run_requests] == [r.run_key for r in b.run_requests]
        assert a.run_requests[0].job_name == f"refresh_{name}_job"
        quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=a.cursor, resources=res))
        assert not quiet.run_requests
        for _ in range(10):  # live traffic until Square records a change
            httpx.post(f"{sims.base_urls['square']}/__tick", json={"n": 20})
            later = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=a.cursor, resources=res))
            if later.run_requests:
                break
        assert later.run_requests and later.run_requests[0].run_key != a.run_requests[0].run_key


def test_run_failure_alert_is_recorded_once(sync_warehouse, session_settings):
    wh = WarehouseResource(home=str(session_settings.home))
    run_id = unique("run")
    record_alert(wh, run_id, "push_corrections_job", "boom")
    record_alert(wh, run_id, "push_corrections_job", "boom")
    with sync_warehouse.connect("pusher") as conn:
        assert conn.execute("select count(*) from ops.sync_alerts where run_id = %s", (run_id,)).fetchone()[0] == 1


def test_a_data_test_left_to_the_full_build_counts_by_its_last_verdict_in_the_push_gate():
    """The quick path's gate: a check it does not re-run may have passed on an older materialization, but a
    failure still blocks every push until a build passes it again; other checks must see the latest data."""
    from orchestration.lib.push import blocking_check_failures

    verdict = {"passed": True}

    @dg.asset(key=source_key(unique("shopify")), group_name="marts")
    def source():
        return None

    @dg.asset_check(asset=source, blocking=True)
    def unique_rows():
        return dg.AssetCheckResult(passed=verdict["passed"])

    graph = dg.Definitions(assets=[source], asset_checks=[unique_rows]).resolve_asset_graph()
    check = unique_rows.check_key
    with dg.instance_for_test() as instance:
        dg.materialize([source, unique_rows], instance=instance)
        dg.materialize([source], instance=instance, selection=[source.key])  # a quick cycle: no test

        stale = blocking_check_failures(instance, graph, [source.key])
        assert stale == [f"{check.asset_key.to_user_string()}:unique_rows evaluated an older materialization "
                         "than the latest one"]
        assert blocking_check_failures(instance, graph, [source.key], verdict_only={check}) == []

        verdict["passed"] = False
        dg.materialize([source, unique_rows], instance=instance, raise_on_error=False)  # the full build fails it
        dg.materialize([source], instance=instance, selection=[source.key])
        failed = blocking_check_failures(instance, graph, [source.key], verdict_only={check})
        assert len(failed) == 1 and "unique_rows failed" in failed[0]
