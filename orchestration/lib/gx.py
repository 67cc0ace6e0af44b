"""The Great Expectations 1.x adapter: run a registered suite against the warehouse, turn the result into
a Dagster `AssetCheckResult`, and keep Data Docs and row-count baselines under `$INVENTORY_SYNC_HOME/gx/`.

Owns: the ephemeral GX context per run (nothing GX-specific lives in the repository besides the suites
in `expectations/`), the result → check-result mapping (severity, counts, a capped sample of failing
rows), the filesystem Data Docs site, and the baselines the sharp-shrink rule compares against.
Defines nothing when imported.

Severity: a failed `critical` expectation makes the check an ERROR; if only `warning` expectations
failed it is a WARN (Dagster blocks downstream steps on ERROR only, and so does the push guard).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from expectations._common import DEFAULT_SCHEMAS, Schemas
from expectations.registry import SuiteSpec

MAX_FAILING_ROWS = 20  # per check: enough to act on, small enough for the event log
DATA_DOCS_SITE = "inventory_sync"
KEEP_VALIDATIONS_PER_SUITE = 20


@dataclass(frozen=True)
class ExpectationFailure:
    expectation: str
    description: str
    severity: str  # "critical" | "warning" | "info"
    unexpected_count: int | None
    sample: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class SuiteOutcome:
    spec: SuiteSpec
    success: bool
    evaluated: int
    failures: list[ExpectationFailure]
    row_count: int | None
    min_row_count: int
    data_docs: Path | None
    error: str | None = None  # the suite could not run at all (missing table, no connection…)

    @property
    def severity(self) -> dg.AssetCheckSeverity:
        if self.error or any(f.severity == "critical" for f in self.failures):
            return dg.AssetCheckSeverity.ERROR
        return dg.AssetCheckSeverity.WARN


# --------------------------------------------------------------------------------------------------
# State under $INVENTORY_SYNC_HOME/gx/
# --------------------------------------------------------------------------------------------------


def gx_home(home: str | os.PathLike) -> Path:
    path = Path(home) / "gx"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    # Checks run in parallel processes; they share the baselines file and the Data Docs index.
    with open(home / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _baselines_path(home: Path) -> Path:
    return home / "row_count_baselines.json"


def read_baseline(home: Path, suite_name: str) -> int | None:
    try:
        return int(json.loads(_baselines_path(home).read_text())[suite_name]["row_count"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_baseline(home: Path, suite_name: str, row_count: int) -> None:
    path = _baselines_path(home)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[suite_name] = {"row_count": row_count, "recorded_at": datetime.now(UTC).isoformat()}
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def min_row_count(baseline: int | None, max_shrink: float | None) -> int:
    if not baseline or max_shrink is None:
        return 0
    return math.ceil(baseline * (1 - max_shrink))


# --------------------------------------------------------------------------------------------------
# Running a suite
# --------------------------------------------------------------------------------------------------


def _context(home: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # No default temp-dir docs site: GX would leave one directory in /tmp per check run.
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm noise in Dagster logs
    # Results are kept on disk so the Data Docs index shows the latest run of every suite, not only this one.
    context.add_store(
        "validation_results_fs",
        {
            "class_name": "ValidationResultsStore",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(home / "validations")},
        },
    )
    context.variables.validation_results_store_name = "validation_results_fs"
    context.add_data_docs_site(
        DATA_DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(home / "data_docs")},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def _prune_validations(home: Path, suite_name: str) -> None:
    # TupleFilesystemStoreBackend layout: validations/<suite>/<run_name>/<run_time>/<batch>.json
    runs = sorted((home / "validations" / suite_name).glob("*/*/*.json"), key=lambda p: p.stat().st_mtime)
    for stale in runs[:-KEEP_VALIDATIONS_PER_SUITE]:
        stale.unlink(missing_ok=True)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _failure(result: Mapping[str, Any]) -> ExpectationFailure:
    config = result.get("expectation_config") or {}
    body = result.get("result") or {}
    exc = result.get("exception_info") or {}
    kind = config.get("type", "?")
    if kind == "unexpected_rows_expectation":
        count = body.get("observed_value")
        sample = (body.get("details") or {}).get("unexpected_rows") or []
    elif "unexpected_count" in body:
        count = body.get("unexpected_count")
        sample = body.get("partial_unexpected_index_list") or [
            {"value": v} for v in body.get("partial_unexpected_list") or []
        ]
    else:  # aggregate expectations (row count…): the observation is the evidence
        count = None
        sample = [{"observed_value": body.get("observed_value"), **{k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}}]
    kwargs = config.get("kwargs") or {}
    description = config.get("description") or ", ".join(
        f"{k}={v}" for k, v in kwargs.items() if k not in ("batch_id", "unexpected_rows_query")
    )
    return ExpectationFailure(
        expectation=kind,
        description=description,
        severity=str(config.get("severity") or "critical"),
        unexpected_count=int(count) if isinstance(count, (int, float)) else None,
        sample=[_json_safe(r) for r in sample[:MAX_FAILING_ROWS]],
        error=_exception_message(exc),
    )


def _exception_message(info: Mapping[str, Any]) -> str | None:
    # Expectation-level errors are flat; metric-level ones (e.g. a failing SQL query) are keyed by metric id.
    candidates = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, Mapping)]
    for c in candidates:
        if c.get("raised_exception") or c.get("exception_message"):
            message = str(c.get("exception_message") or "").strip()
            return message.splitlines()[0][:500] if message else "raised an exception"
    return None


def run_suite(
    spec: SuiteSpec,
    url: str,
    home: str | os.PathLike,
    *,
    schemas: Schemas = DEFAULT_SCHEMAS,
    build_docs: bool = True,
) -> SuiteOutcome:
    """Validate `spec`'s relation at `url` (a SQLAlchemy URL, e.g. `postgresql+psycopg://…`) in an ephemeral context.

    Never raises for data or query problems: a suite that cannot run is a failed outcome with `error` set,
    so a missing table or a broken query surfaces as a failed (ERROR) check rather than a crashed step.
    """
    import great_expectations as gx

    state = gx_home(home)
    baseline = read_baseline(state, spec.name)
    floor = min_row_count(baseline, spec.max_shrink)
    schema, table = spec.relation(schemas)
    source = None
    try:
        context = _context(state)
        source = context.data_sources.add_postgres("warehouse", connection_string=url)
        asset = source.add_table_asset(name=f"{schema}.{table}", table_name=table, schema_name=schema)
        batch = asset.add_batch_definition_whole_table("whole_table")
        suite = context.suites.add(spec.build(schemas))
        validation = context.validation_definitions.add(gx.ValidationDefinition(name=spec.name, data=batch, suite=suite))
        result = validation.run(
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": list(spec.index_columns),
                "partial_unexpected_count": MAX_FAILING_ROWS,
                "return_unexpected_index_query": False,
            },
            expectation_parameters={"min_row_count": floor},
        )
    except Exception as exc:  # noqa: BLE001 - reported as a failed check with the reason
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return SuiteOutcome(spec, False, 0, [], None, floor, None, error=message)
    finally:
        _close_engines(source)

    payload = result.to_json_dict()
    results = payload.get("results") or []
    failures = [_failure(r) for r in results if not r.get("success")]
    row_count = _observed_row_count(results) if spec.max_shrink is not None else None
    docs = None
    with _locked(state):
        shrink_ok = not any(f.expectation == "expect_table_row_count_to_be_between" for f in failures)
        if row_count is not None and shrink_ok:
            # Only a load that passed becomes the new baseline, so a sharp shrink stays red until fixed
            # (or until someone deletes the entry from row_count_baselines.json on purpose).
            _write_baseline(state, spec.name, row_count)
        if build_docs:
            _prune_validations(state, spec.name)
            try:
                context.build_data_docs(site_names=[DATA_DOCS_SITE])
                docs = state / "data_docs" / "index.html"
            except Exception:  # noqa: BLE001, S110 - docs are a convenience; the check result stands without them
                docs = None
    return SuiteOutcome(spec, bool(payload.get("success")), len(results), failures, row_count, floor, docs)


def _close_engines(source) -> None:
    """Close the connections GX's datasource opened (its engine and its execution engine's). GX leaves them
    to garbage collection, so a long-lived process (the demo, the bench) piled up idle connections, one or
    two per check run, until PostgreSQL refused new ones."""
    engines = (getattr(source, "_engine", None), getattr(getattr(source, "_execution_engine", None), "engine", None))
    for engine in {id(e): e for e in engines if e is not None}.values():
        with contextlib.suppress(Exception):
            engine.dispose()


def _observed_row_count(results: list[dict[str, Any]]) -> int | None:
    # The shrink rule's own observation, so the baseline is exactly the count the rule judged.
    for r in results:
        if (r.get("expectation_config") or {}).get("type") == "expect_table_row_count_to_be_between":
            observed = (r.get("result") or {}).get("observed_value")
            return int(observed) if isinstance(observed, (int, float)) else None
    return None


# --------------------------------------------------------------------------------------------------
# Dagster
# --------------------------------------------------------------------------------------------------


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no rows_"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def to_check_result(outcome: SuiteOutcome) -> dg.AssetCheckResult:
    spec = outcome.spec
    sample: list[dict[str, Any]] = []
    for f in outcome.failures:
        for row in f.sample:
            if len(sample) >= MAX_FAILING_ROWS:
                break
            sample.append({"expectation": f.description or f.expectation, **row})
    failed_rows = sum(f.unexpected_count or 0 for f in outcome.failures)
    summary = [
        {"expectation": f.expectation, "severity": f.severity, "unexpected": f.unexpected_count, "description": f.description, "error": f.error or ""}
        for f in outcome.failures
    ]
    metadata: dict[str, Any] = {
        "suite": spec.name,
        "relation": ".".join(spec.relation()),
        "evaluated_expectations": outcome.evaluated,
        "failed_expectations": len(outcome.failures),
        "failing_row_count": failed_rows,
        "failures": dg.MetadataValue.md(_markdown_table(summary)),
        "failing_rows": dg.MetadataValue.json(sample),
        "failing_rows_shown": len(sample),
    }
    if outcome.row_count is not None:
        metadata["row_count"] = outcome.row_count
        metadata["min_row_count"] = outcome.min_row_count
    if outcome.data_docs is not None:
        metadata["data_docs"] = dg.MetadataValue.path(str(outcome.data_docs))
    if outcome.error:
        metadata["error"] = outcome.error
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(list(spec.asset_key)),
        check_name=spec.check_name,
        passed=outcome.success,
        severity=outcome.severity,
        metadata=metadata,
        description=spec.description,
    )


def run_check(spec: SuiteSpec, warehouse, *, role: str = "transformer", schemas: Schemas = DEFAULT_SCHEMAS) -> dg.AssetCheckResult:
    """Run `spec` as `role` on the `WarehouseResource` (or `Warehouse`) given, as an `AssetCheckResult`."""
    wh = warehouse.warehouse() if hasattr(warehouse, "warehouse") else warehouse
    home = getattr(warehouse, "home", None) or wh.settings.home
    # Data Docs are rebuilt once per sync cycle (build_data_docs), not once per check: a rebuild
    # renders every stored validation and costs more than the validation itself.
    return to_check_result(run_suite(spec, wh.url(role, driver="postgresql+psycopg"), home, schemas=schemas, build_docs=False))


def build_data_docs(home: str | os.PathLike) -> Path | None:
    """Render the Data Docs site from the stored validation results (the latest of every suite)."""
    state = gx_home(home)
    with _locked(state):
        context = _context(state)
        context.build_data_docs(site_names=[DATA_DOCS_SITE])
    index = state / "data_docs" / "index.html"
    return index if index.exists() else None
