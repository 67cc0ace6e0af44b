"""Dagster resources with domain verbs: the warehouse (per-role connections) and the dbt CLI."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg

from orchestration.lib.warehouse import Warehouse, open_warehouse
from orchestration.settings import Settings


class WarehouseResource(dg.ConfigurableResource):
    """Connections to the inventory-sync warehouse, one least-privilege role per concern."""

    home: str
    database_url: str | None = None

    def warehouse(self) -> Warehouse:
        return open_warehouse(Settings(home=Path(self.home), database_url=self.database_url), bootstrap=False)

    def connect(self, role: str, **kwargs) -> psycopg.Connection:
        return self.warehouse().connect(role, **kwargs)
