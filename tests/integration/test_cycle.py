"""dbt really builds through Dagster, on the persistent (Postgres-backed) instance, and the CLI works end to end."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest


@pytest.fixture(scope="module")
def reference_rows(load_file_rows):
    load_file_rows("skus", [{"sku": "CYC-1", "base_uom": "EA", "description": "cycle test"}])
    load_file_rows("locations", [{"location": "CYC-WH", "kind": "warehouse", "master_channel": "shiphero"}])
    load_file_rows("uom_conversions", [{"sku": "CYC-1", "uom": "CS12", "factor_to_base": Decimal(12)}])
    load_file_rows("movements", [
        {"source": "erp", "event_id": "R1", "occurred_at": datetime(2026, 1, 1, tzinfo=UTC), "sku": "CYC-1",
         "location": "CYC-WH", "movement_type": "receipt", "quantity": Decimal(2), "uom": "CS12",
         "unit_cost": Decimal("24.00"), "currency": "USD", "reference": "GRN-1"},
        {"source": "erp", "event_id": "S1", "occurred_at": datetime(2026, 1, 2, tzinfo=UTC), "sku": "CYC-1",
         "location": "CYC-WH", "movement_type": "sale", "quantity": Decimal(-5), "uom": "EA",
         "unit_cost": None, "currency": None, "reference": "SO-1"},
        {"source": "erp", "event_id": "X1", "occurred_at": datetime(2026, 1, 2, tzinfo=UTC), "sku": "NOPE",
         "location": "CYC-WH", "movement_type": "sale", "quantity": Decimal(-1), "uom": "EA",
         "unit_cost": None, "currency": None, "reference": None},
    ])


def test_dbt_build_runs_through_dagster(warehouse, session_settings, reference_rows):
    import dagster as dg

    from orchestration.lib.runner import run_cycle

    result = run_cycle(session_settings, push=False)
    assert result.success, result.summary()
    assert result.materialized > 0
    with dg.DagsterInstance.get() as instance:  # the run is in the Postgres-backed instance
        assert instance.get_run_by_id(result.run_id) is not None
        assert "postgres" in type(instance.run_storage).__module__
    with warehouse.admin_connect() as conn:
        rows = conn.execute(
            "select movement_type, quantity_base, unit_cost_base from intermediate.int_movements_unified"
            " where sku = 'CYC-1' order by occurred_at"
        ).fetchall()
        assert rows == [("receipt", Decimal(24), Decimal(2)), ("sale", Decimal(-5), None)]
        reasons = conn.execute(
            "select quarantine_reason from intermediate.int_movements_quarantined where event_id = 'X1'"
        ).fetchall()
        assert reasons == [("unknown_sku",)]


def _materialized(run_id: str) -> set:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return {e.dagster_event.asset_key
                for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)}


def _step_starts(run_id: str) -> list[str]:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return [e.step_key for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)]


def test_quick_cycles_leave_unchanged_views_alone_and_advisory_checks_to_their_own_run(
        warehouse, session_settings, reference_rows, monkeypatch):
    """After the full build above, a quick cycle creates again only the views that are missing; a change
    to the project's files (its fingerprint) makes it create every view again. Checks that gate nothing
    (non-blocking GX suites) are not in the quick run: advisory_checks_job runs them on the marts the quick
    run built, requested once per quick run by advisory_checks_sensor."""
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.defs.sync.factory import ADVISORY_JOB, QUICK_SYNC_JOB
    from orchestration.defs.transform import dbt_assets
    from orchestration.lib.runner import run_cycle

    quick_job = build_definitions(session_settings).resolve_job_def(QUICK_SYNC_JOB)
    staging = {key for key in dbt_assets.VIEWS if key.path[0] == "staging"} & quick_job.asset_layer.selected_asset_keys
    assert len(staging) > 5
    dropped = dg.AssetKey(["staging", "stg_file__skus"])
    with warehouse.admin_connect(autocommit=True) as conn:
        conn.execute("drop view staging.stg_file__skus")

    quick = run_cycle(session_settings, push=False, quick=True)
    assert quick.success, quick.summary()
    built = _materialized(quick.run_id)
    assert built & staging == {dropped}, "only the missing view is created again"
    assert dg.AssetKey(["intermediate", "int_movements_unified"]) in built  # the tables are rebuilt
    with warehouse.admin_connect() as conn:
        assert conn.execute("select count(*) from staging.stg_file__skus").fetchone() is not None
        assert conn.execute("select quantity_base from intermediate.int_movements_unified where sku = 'CYC-1'"
                            " order by occurred_at").fetchall() == [(Decimal(24),), (Decimal(-5),)]

    steps = _step_starts(quick.run_id)
    advisory_steps = ("gx_channel_drift_uom", "gx_channel_drift_within_tolerance", "gx_negative_positions")
    assert not [step for step in steps if step.endswith(advisory_steps)], steps
    assert [step for step in steps if "_gx_" in step], "the gating GX checks stay in the quick run"
    # In a deployment advisory_checks_sensor requests the run after each quick run, once per run.
    defs = build_definitions(session_settings)
    sensor = next(s for s in defs.sensors if s.name == "advisory_checks_sensor")
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(quick.run_id)
        success = instance.all_logs(quick.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)[0].dagster_event
        requests = [sensor(dg.build_run_status_sensor_context(sensor.name, success, instance, run))
                    for _ in range(2)]
    assert [r.run_key for r in requests] == [f"advisory:{quick.run_id}"] * 2  # evaluated twice: one run
    checked = run_cycle(session_settings, job_name=ADVISORY_JOB, quiet=True, data_docs=False)
    assert checked.success and checked.materialized == 0, checked.summary()
    assert sorted(step.rsplit("_gx_", 1)[1] for step in _step_starts(checked.run_id)) == sorted(
        name.removeprefix("gx_") for name in advisory_steps)

    monkeypatch.setattr(dbt_assets, "project_fingerprint", lambda *_: "a changed project")
    changed = run_cycle(session_settings, push=False, quick=True)
    assert changed.success, changed.summary()
    assert staging <= _materialized(changed.run_id)


def cli(*args: str, env=None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestration.cli", *args], capture_output=True, text=True, env=env, input=stdin)


def test_run_quick_on_the_command_line_runs_the_advisory_checks_next(warehouse, runtime_env, reference_rows):
    """`inventory-sync run --quick` is a quick cycle and then, in a run of its own, the checks that gate
    nothing (what advisory_checks_sensor requests in a deployment)."""
    import os
    import re

    proc = cli("run", "--quick", "--no-push", env={**os.environ, **runtime_env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = re.findall(r"^(sync cycle|advisory checks) succeeded in [\d.]+s: (\d+) assets materialized \(run ([\w-]+)\)$",
                      proc.stdout, flags=re.MULTILINE)
    assert [what for what, _, _ in runs] == ["sync cycle", "advisory checks"], proc.stdout
    (_, built, quick_id), (_, checked_assets, advisory_id) = runs
    assert int(built) > 0 and int(checked_assets) == 0
    assert not [step for step in _step_starts(quick_id) if step.endswith("gx_negative_positions")]
    assert sorted(step.rsplit("_gx_", 1)[1] for step in _step_starts(advisory_id)) == [
        "channel_drift_uom", "channel_drift_within_tolerance", "negative_positions"]


def test_import_quarantines_bad_rows_and_loads_good_ones(warehouse, runtime_env, tmp_path):
    import os

    env = {**os.environ, **runtime_env}
    path = tmp_path / "moves.csv"
    path.write_text(
        "event_id,occurred_at,sku,location,movement_type,quantity,uom,unit_cost,currency,reference\n"
        "IMP-1,2026-01-03T10:00:00+00:00,CYC-1,CYC-WH,receipt,10,EA,1.5,USD,GRN-9\n"
        "IMP-2,2026-01-03T10:00:00,CYC-1,CYC-WH,sale,-1,EA,,,\n"
        "IMP-3,2026-01-03T11:00:00+00:00,CYC-1,CYC-WH,sale,NaN,EA,,,\n"
        "IMP-4,2026-01-03T12:00:00+00:00,CYC-1,CYC-WH,receipt,5,EA,,,\n"
    )
    first = cli("import", "movements", str(path), env=env)
    assert first.returncode == 1, first.stderr
    assert "4 rows read, 1 loaded, 0 already present, 3 quarantined" in first.stdout
    for reason in ("missing_timezone", "non_finite_number", "missing_cost"):
        assert reason in first.stdout
    again = cli("import", "movements", str(path), env=env)
    assert "1 loaded" not in again.stdout and "1 already present" in again.stdout
    with warehouse.admin_connect() as conn:
        assert conn.execute("select count(*) from raw.file_movements where event_id = 'IMP-1'").fetchone() == (1,)
        assert conn.execute("select count(*) from ops.quarantine where source_key like 'moves.csv:%'").fetchone()[0] == 6


def test_import_with_a_wrong_header_loads_nothing(warehouse, runtime_env, tmp_path):
    import os

    path = tmp_path / "skus.csv"
    path.write_text("sku,description\nA,no base unit column\n")
    proc = cli("import", "skus", str(path), env={**os.environ, **runtime_env})
    assert proc.returncode == 2
    assert proc.stderr.startswith("inventory-sync: error: missing column(s) base_uom")


def test_query_prints_csv_and_is_read_only(warehouse, runtime_env):
    import os

    env = {**os.environ, **runtime_env}
    with warehouse.connect("transformer") as conn:
        conn.execute("create table if not exists marts.cli_probe as select 1 as n, 'a,b' as label")
    ok = cli("query", "select n, label from marts.cli_probe", env=env)
    assert ok.returncode == 0, ok.stderr
    assert list(csv.reader(io.StringIO(ok.stdout))) == [["n", "label"], ["1", "a,b"]]
    denied = cli("query", "delete from marts.cli_probe", env=env)
    assert denied.returncode == 2 and "query failed" in denied.stderr
    raw = cli("query", "select * from raw.file_skus", env=env)
    assert raw.returncode == 2 and "permission denied" in raw.stderr


def test_db_url_prints_the_analyst_connection(warehouse, runtime_env):
    import os

    import psycopg

    proc = cli("db", "url", "--role", "analyst", env={**os.environ, **runtime_env})
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(proc.stdout.strip()) as conn:
        assert conn.execute("select current_user").fetchone()[0].endswith("_analyst")
