"""The only module that reads the environment.

`Settings.from_env()` is called by the command line and by `definitions.py` when they start, never at
import time, so tests build their own `Settings` without reloading modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

# Every variable a user can set, with what it does; the README's configuration table is this list.
ENVIRONMENT = {
    "INVENTORY_SYNC_HOME": "State directory: database files, Dagster home, logs (default ./.inventory-sync).",
    "INVENTORY_SYNC_DATABASE_URL": "Use this PostgreSQL instead of the embedded server (postgresql://…).",
    "INVENTORY_SYNC_CHANNELS": "Path of the channel registry YAML (default: the bundled channels.yaml).",
    "SHOPIFY_ACCESS_TOKEN": "Shopify Admin API access token (X-Shopify-Access-Token).",
    "SHOPIFY_WEBHOOK_SECRET": "Shopify app client secret used to verify webhook HMACs.",
    "SQUARE_ACCESS_TOKEN": "Square OAuth/personal access token (Bearer).",
    "SQUARE_WEBHOOK_SIGNATURE_KEY": "Square webhook subscription signature key.",
    "AMAZON_SP_ACCESS_TOKEN": "Amazon SP-API Login-with-Amazon access token (x-amz-access-token).",
    "SHIPHERO_ACCESS_TOKEN": "ShipHero Public API JWT (Bearer).",
    "TOAST_ACCESS_TOKEN": "Toast API access token (Bearer).",
}


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None = None
    channels_file: Path | None = None
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("INVENTORY_SYNC_HOME") or PROJECT_ROOT / ".inventory-sync").expanduser()
        channels = env.get("INVENTORY_SYNC_CHANNELS")
        secrets = {k: env[k] for k in ENVIRONMENT if k.endswith(("_TOKEN", "_SECRET", "_KEY")) and env.get(k)}
        return cls(
            home=home.resolve(),
            database_url=env.get("INVENTORY_SYNC_DATABASE_URL") or None,
            channels_file=Path(channels).resolve() if channels else None,
            secrets=secrets,
        )

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"
