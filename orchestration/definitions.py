"""The only Definitions: everything under `orchestration/defs`, plus the resources it needs."""

import dagster as dg
from dagster_dbt import DbtCliResource

import orchestration.defs
from orchestration.lib.dbt import dbt_executable, dbt_project
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
    return dg.Definitions.merge(dg.load_defs(orchestration.defs), dg.Definitions(resources=resources))


defs = build_definitions(Settings.from_env())
