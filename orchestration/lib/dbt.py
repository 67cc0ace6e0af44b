"""The dbt project as Dagster sees it: where it lives, its manifest, and how nodes become asset keys.

Asset keys mirror relations (`staging/stg_file__movements`, `marts/fct_stock_positions`); sources map to
the raw landing tables' keys (`raw/<channel>/<entity>`). The translator overrides `get_asset_spec` only.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject
from packaging import version

from orchestration.lib.dbt_warm import real_dbt
from orchestration.settings import DBT_PROJECT_DIR

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
PARTIAL_PARSE_CACHE = DBT_PROJECT_DIR / "target" / "partial-parse"
STAGE_GROUPS = {"staging": "staging", "intermediate": "intermediate", "marts": "marts"}


class DbtProjectError(RuntimeError):
    """The dbt project does not parse; the message is one line."""


def dbt_executable() -> str:
    """dbt from this interpreter's environment (the venv), so `dagster dev` and tests find the same one:
    `inventory-sync-dbt`, which is that dbt, run through a warm server when one is up
    (orchestration.lib.dbt_warm)."""
    warm = Path(sys.executable).with_name("inventory-sync-dbt")
    return str(warm) if warm.exists() else real_dbt()


class LocalDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, told that its dbt is this environment's dbt-core. dagster-dbt otherwise
    learns the version by running `dbt --version` before every invocation, which starts a whole dbt
    process and asks PyPI for the latest release (seconds per sync cycle; offline, up to its timeout)."""

    @functools.cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) != Path(dbt_executable()) or not Path(self.dbt_executable).is_absolute():
            return super()._cli_version
        from importlib.metadata import version as installed

        return version.parse(installed("dbt-core"))

    def _get_unique_target_path(self, *, context) -> Path:
        path = super()._get_unique_target_path(context=context)
        absolute = path if path.is_absolute() else Path(self.project_dir) / path
        seed_partial_parse(absolute)
        prune_run_targets(absolute.parent)
        return path

    def _initialize_dbt_core_adapter(self, args):
        """No in-process dbt adapter. dagster-dbt builds one before every invocation (loading every macro
        of the project: about 0.8 s a build, 2.7 s for the first in a process) only for
        `fetch_column_metadata` and `fetch_row_counts`, which this project does not use: the marts'
        metadata comes from orchestration.lib.ui_metadata. The invocation accepts no adapter."""
        return None


# dagster-dbt's per-invocation target directories: "<op>-<run id[:7]>-<uuid[:7]>", or "<uuid[:7]>" outside a run
RUN_TARGET = re.compile(r"(?:[A-Za-z0-9_]+-[0-9a-f]{7}-)?[0-9a-f]{7}")
KEEP_RUN_TARGETS = 20
RUN_TARGET_MIN_AGE = 3600.0


def prune_run_targets(root: Path, keep: int = KEEP_RUN_TARGETS, min_age: float = RUN_TARGET_MIN_AGE,
                      now: float | None = None) -> list[Path]:
    """Delete old per-invocation target directories of dagster-dbt under `root` (its compiled SQL, run
    results and log: 4-7 MB each). One is left behind by every dbt build, so a deployment syncing every
    few seconds would fill its disk (tens of GB a day). Keeps the newest `keep` and anything modified in
    the last `min_age` seconds (a run still writing or being read: another process may be running one).
    Only directories named as dagster-dbt names them are touched. Returns what was deleted."""
    now = time.time() if now is None else now
    try:
        entries = [p for p in root.iterdir() if p.is_dir() and RUN_TARGET.fullmatch(p.name)]
    except OSError:
        return []
    aged = []
    for path in entries:
        try:
            aged.append((path.stat().st_mtime, path))
        except OSError:  # deleted meanwhile by another process's pruning
            continue
    aged.sort(reverse=True)
    deleted = []
    for mtime, path in aged[keep:]:
        if now - mtime >= min_age:
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path)
    return deleted


def seed_partial_parse(target: Path, cache: Path = PARTIAL_PARSE_CACHE, identity: str | None = None) -> None:
    """Give a dbt invocation writing to `target` the saved parse made for its own connection.

    dbt parses the whole project again (seconds per build) when the saved parse was made for another
    connection (host, port, user, database are hashed into it), and every home's embedded server has its
    own port: two instances on one checkout (a demo and the tests, the bench's live loop) would make each
    other parse in full on every build. So one saved parse is kept per connection: the parse the previous
    invocation for this connection left in its target directory is saved, then copied into `target`
    (dagster-dbt copies the project's shared `target/partial_parse.msgpack` only when none is there)."""
    key = hashlib.sha256((identity if identity is not None else _connection_identity()).encode()).hexdigest()[:16]
    saved, last = cache / f"{key}.msgpack", cache / f"{key}.last"
    cache.mkdir(parents=True, exist_ok=True)
    previous = Path(last.read_text().strip()) / "partial_parse.msgpack" if last.exists() else None
    if previous is not None and previous.exists() and previous.parent != target:
        staging = cache / f"{key}.{os.getpid()}.tmp"
        shutil.copyfile(previous, staging)
        os.replace(staging, saved)  # whole files only, whatever other processes do
    if saved.exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(saved, target / "partial_parse.msgpack")
    last.write_text(str(target))


def _dbt_sources_newer_than_manifest() -> bool:
    if not MANIFEST.exists():
        return True
    built = MANIFEST.stat().st_mtime
    for folder in ("models", "macros", "seeds", "data-tests"):
        for path in (DBT_PROJECT_DIR / folder).rglob("*"):
            if path.is_file() and path.stat().st_mtime > built:
                return True
    return any(p.stat().st_mtime > built for p in DBT_PROJECT_DIR.glob("*.yml"))


PARSED_FOR = DBT_PROJECT_DIR / "target" / ".parsed-for"
CONNECTION_VARS = ("INVENTORY_SYNC_PG_HOST", "INVENTORY_SYNC_PG_PORT", "INVENTORY_SYNC_PG_USER",
                   "INVENTORY_SYNC_PG_DATABASE")


def _connection_identity() -> str:
    """What dbt hashes into a manifest's profile check (not the password): a parse made for another
    host or port makes every `dbt build` parse the whole project again."""
    return "\n".join(f"{name}={os.environ.get(name, '')}" for name in CONNECTION_VARS)


def ensure_manifest() -> Path:
    """Parse the project when the manifest is missing, older than the project files, or was parsed
    for another connection (so each run's `dbt build` can parse partially, from its saved state).

    `dbt parse` needs no database, so this runs at install and setup time, never inside a run.
    """
    stale_profile = not PARSED_FOR.exists() or PARSED_FOR.read_text() != _connection_identity()
    if _dbt_sources_newer_than_manifest() or stale_profile:
        proc = subprocess.run(
            [dbt_executable(), "parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--quiet"],
            capture_output=True,
            text=True,
            env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        )
        if proc.returncode != 0:
            detail = (proc.stdout + proc.stderr).strip().splitlines()
            raise DbtProjectError("dbt parse failed: " + (detail[-1].strip() if detail else "no output")
                                  + " (run `inventory-sync dbt parse` for the full output)")
        PARSED_FOR.write_text(_connection_identity())
    return MANIFEST


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# Quick builds leave a view alone when nothing it could be made of changed (orchestration.defs.sync's quick
# jobs carry the tag; orchestration.defs.transform.dbt_assets applies it).
QUICK_BUILD_TAG = "inventory-sync/quick-build"
PROJECT_FINGERPRINT = "inventory_sync/dbt_project_fingerprint"
PROJECT_FILES = ("models", "macros", "seeds", "snapshots", "data-tests", "dbt_project.yml", "profiles.yml")


def project_fingerprint(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """A hash of everything a view's SQL can come from: every file of the dbt project (models, macros,
    project and profile settings) and the dbt versions that compile and materialize it."""
    from importlib.metadata import version as installed

    digest = hashlib.sha256(f"{installed('dbt-core')}|{installed('dbt-postgres')}".encode())
    for name in PROJECT_FILES:
        root = project_dir / name
        for path in sorted([root] if root.is_file() else root.rglob("*") if root.is_dir() else []):
            if path.is_file():
                digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def view_models(manifest: Mapping[str, Any]) -> dict[dg.AssetKey, tuple[str, str]]:
    """The project's view models a quick build may leave alone, by asset key: (schema, relation name). Only
    views made of sources and of other such views (through ephemeral models too): dbt replaces a table by
    renaming the old one and dropping it with CASCADE, which drops every view over it, so a view over a table
    (or a seed, an incremental model) is always created again."""
    nodes = manifest["nodes"]
    only_views: dict[str, bool] = {}

    def made_of_views(unique_id: str) -> bool:
        if unique_id not in only_views:
            only_views[unique_id] = False  # (a cycle cannot happen in dbt's graph; this only ends recursion)
            parents = [p for p in (nodes[unique_id].get("depends_on") or {}).get("nodes", []) if p in nodes]
            only_views[unique_id] = all(
                (nodes[p].get("config") or {}).get("materialized") in ("view", "ephemeral") and made_of_views(p)
                for p in parents)
        return only_views[unique_id]

    views = {}
    for unique_id, node in nodes.items():
        config = node.get("config") or {}
        if node.get("resource_type") == "model" and config.get("materialized") == "view" and made_of_views(unique_id):
            schema = config.get("schema") or node["schema"]
            views[dg.AssetKey([schema, node["name"]])] = (node["schema"], node.get("alias") or node["name"])
    return views


def views_to_keep(views: Mapping[dg.AssetKey, tuple[str, str]], fingerprints: Mapping[dg.AssetKey, str | None],
                  present: set[tuple[str, str]], fingerprint: str) -> list[str]:
    """Of `views` (the selected ones), those a quick build need not create again: the relation is in the
    database and its last build was made from the same project (`fingerprints`: what each view's latest
    materialization recorded). Returned as dbt model names for `--exclude`."""
    return sorted(key.path[-1] for key, relation in views.items()
                  if relation in present and fingerprints.get(key) == fingerprint)


class InventoryDbtTranslator(DagsterDbtTranslator):
    """Asset keys `<schema>/<model>` grouped by stage; sources map to `raw/<channel>/<entity>`."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["sources"].get(unique_id) or manifest["nodes"].get(unique_id) or {}
        if node.get("resource_type") == "source":
            if ((node.get("meta") or {}).get("dagster") or {}).get("asset_key"):
                return spec  # the ops tables, keyed in the source's meta (declared in defs/sync)
            table = node["name"]
            channel = node["source_name"]
            entity = table[len(channel) + 1 :] if table.startswith(channel + "_") else table
            return spec.replace_attributes(key=dg.AssetKey(["raw", channel, entity]), group_name="extract")
        schema = node.get("config", {}).get("schema") or node.get("schema")
        if node.get("resource_type") in ("model", "seed", "snapshot") and schema:
            return spec.replace_attributes(
                key=dg.AssetKey([schema, node["name"]]), group_name=STAGE_GROUPS.get(schema, schema)
            )
        return spec


translator = InventoryDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
