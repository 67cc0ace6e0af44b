"""The only Definitions: everything under `orchestration/defs`, plus the resources it needs."""

import dagster as dg
from dagster_dbt import DbtCliResource

import orchestration.defs
from orchestration.defs.extract.factory import build_extract_definitions
from orchestration.lib.dbt import dbt_executable, dbt_project
from orchestration.lib.registry import load_registry
from orchestration.lib.resources import WarehouseResource
from orchestration.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    resources = {
        "warehouse": WarehouseResource(
            home=str(settings.home),
            # Through EnvVar so a URL carrying a password is never shown in the UI.
            database_url=dg.EnvVar("INVENTORY_SYNC_DATABASE_URL") if settings.database_url else None,
        ),
        "dbt": DbtCliResource(
            project_dir=str(dbt_project.project_dir),
            profiles_dir=str(dbt_project.profiles_dir),
            dbt_executable=dbt_executable(),
        ),
    }
    # Static definitions load from defs/; the channel assets come from the registry the settings name.
    extract = build_extract_definitions(load_registry(settings.channels_file))
    return dg.Definitions.merge(dg.load_defs(orchestration.defs), extract, dg.Definitions(resources=resources))


defs = build_definitions(Settings.from_env())
