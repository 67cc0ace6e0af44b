"""The only Definitions: everything under `orchestration/defs`, plus the resources it needs."""

import dagster as dg

import orchestration.defs
from orchestration.defs.extract.factory import build_extract_definitions
from orchestration.defs.quality.checks import BLOCKING_CHECK_KEYS, gx_checks
from orchestration.defs.sync.factory import Guards, build_sync_definitions
from orchestration.lib.dbt import LocalDbtCliResource, dbt_executable, dbt_project
from orchestration.lib.registry import load_registry
from orchestration.lib.resources import WarehouseResource
from orchestration.settings import Settings


def build_definitions(
    settings: Settings, sensor_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED
) -> dg.Definitions:
    """Sensors and schedules start stopped so a UI never pushes to real channels until switched on."""
    resources = {
        "warehouse": WarehouseResource(
            home=str(settings.home),
            # Through EnvVar so a URL carrying a password is never shown in the UI.
            database_url=dg.EnvVar("INVENTORY_SYNC_DATABASE_URL") if settings.database_url else None,
        ),
        "dbt": LocalDbtCliResource(
            project_dir=str(dbt_project.project_dir),
            profiles_dir=str(dbt_project.profiles_dir),
            dbt_executable=dbt_executable(),
        ),
    }
    # Static definitions load from defs/; the channel assets come from the registry the settings name.
    registry = load_registry(settings.channels_file)
    extract = build_extract_definitions(registry)
    guards = Guards(blocking=tuple(BLOCKING_CHECK_KEYS), gx=tuple(k for check in gx_checks for k in check.check_keys))
    sync = build_sync_definitions(registry, default_status=sensor_status, guards=guards)
    return dg.Definitions.merge(dg.load_defs(orchestration.defs), extract, sync, dg.Definitions(resources=resources))


defs = build_definitions(Settings.from_env())
