"""Shared fixtures: ONE embedded PostgreSQL per test session, bootstrapped, with dbt and Dagster wired to it.

`warehouse` is the session's bootstrapped `Warehouse`; `runtime_env` the variables dbt/Dagster read;
`dbt(...)` runs the dbt CLI against it; `load_file_rows(kind, rows)` lands canonical file-channel rows.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from hypothesis import HealthCheck, settings

from orchestration.settings import DBT_PROJECT_DIR, Settings

settings.register_profile(
    "ci", max_examples=50, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("nightly", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def warm_dbt_server():
    """One warm dbt for the session: every dbt invocation (the `dbt` fixture, dagster-dbt in cycles) forks
    from it instead of importing dbt-core again (orchestration.lib.dbt_warm; tests/unit/test_dbt_warm.py)."""
    from orchestration.lib.dbt_warm import warm_dbt

    with warm_dbt() as path:
        yield path


@pytest.fixture(scope="session")
def session_settings(tmp_path_factory) -> Settings:
    home = tmp_path_factory.mktemp("inventory-sync-home")
    return Settings(home=home)


@pytest.fixture(scope="session")
def warehouse(session_settings):
    from orchestration.cli import prepare

    wh = prepare(session_settings, quiet=True)
    yield wh
    wh.stop()


@pytest.fixture(scope="session")
def runtime_env(warehouse, session_settings) -> dict[str, str]:
    from orchestration.cli import runtime_env as build_env

    return build_env(session_settings, warehouse)


@pytest.fixture(scope="session")
def dbt(runtime_env):
    from orchestration.lib.dbt import dbt_executable

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
            capture_output=True, text=True, env={**os.environ, **runtime_env},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"dbt {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
        return proc

    return run


@pytest.fixture(scope="session")
def load_file_rows(warehouse):
    from orchestration.lib import raw

    def load(kind: str, rows: list[dict]) -> raw.LoadResult:
        with warehouse.connect("loader") as conn, conn.transaction():
            return raw.load_file_rows(conn, kind, rows, uuid.uuid4().hex)

    return load
