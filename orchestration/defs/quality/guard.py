"""The push gate (DESIGN §9 I-5; STYLE rule 5): nothing is pushed from data that failed a blocking check.

Dagster's `blocking=True` only holds inside the run that executed the check (reliability.md §2.5:
dagster-io/dagster#25112, #27760), so the push job calls `assert_blocking_checks_passed` itself, in
whatever run it is, and the gate is re-read from the instance's event log. It refuses when, for any
blocking check on the given assets, the latest evaluation
- is missing, still planned, skipped, or the check itself crashed;
- failed with ERROR severity (a WARN failure does not block, as in Dagster);
- passed, but against an older materialization than the asset's latest one (the data changed since).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus


class BlockingCheckFailed(RuntimeError):
    """Raised by the gate; the message lists every check that refused, one per line."""

    def __init__(self, problems: Sequence[GateStatus]):
        self.problems = list(problems)
        lines = [f"- {p.check_key.asset_key.to_user_string()}:{p.check_key.name}: {p.reason}" for p in self.problems]
        super().__init__("push refused: blocking checks did not pass for the latest data\n" + "\n".join(lines))


@dataclass(frozen=True)
class GateStatus:
    check_key: dg.AssetCheckKey
    ok: bool
    reason: str
    run_id: str | None = None


def _default_check_keys() -> list[dg.AssetCheckKey]:
    from orchestration.defs.quality.checks import BLOCKING_CHECK_KEYS

    return list(BLOCKING_CHECK_KEYS)


def blocking_check_status(
    instance: dg.DagsterInstance,
    asset_keys: Iterable[dg.AssetKey] | None = None,
    check_keys: Iterable[dg.AssetCheckKey] | None = None,
) -> list[GateStatus]:
    """The gate's verdict per blocking check (all of them when `asset_keys` is None)."""
    keys = list(check_keys) if check_keys is not None else _default_check_keys()
    if asset_keys is not None:
        wanted = set(asset_keys)
        keys = [k for k in keys if k.asset_key in wanted]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    statuses = []
    for key in keys:
        record = latest.get(key)
        statuses.append(_judge(instance, key, record))
    return statuses


def _judge(instance: dg.DagsterInstance, key: dg.AssetCheckKey, record) -> GateStatus:
    if record is None:
        return GateStatus(key, False, "never evaluated")
    run_id = record.run_id
    if record.status == AssetCheckExecutionRecordStatus.PLANNED:
        return GateStatus(key, False, f"evaluation still in progress or abandoned (run {run_id})", run_id)
    if record.status != AssetCheckExecutionRecordStatus.SUCCEEDED and record.status != AssetCheckExecutionRecordStatus.FAILED:
        return GateStatus(key, False, f"last evaluation did not complete ({record.status.value}, run {run_id})", run_id)
    evaluation = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
    if evaluation is None:
        return GateStatus(key, False, f"last evaluation has no result (run {run_id})", run_id)
    if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
        return GateStatus(key, False, f"failed with ERROR severity (run {run_id})", run_id)
    materializations = instance.fetch_materializations(key.asset_key, limit=1).records
    latest = materializations[0] if materializations else None  # None: an external asset, e.g. a raw table
    target = evaluation.target_materialization_data
    if latest is not None and (target is None or target.storage_id != latest.storage_id):
        return GateStatus(key, False, f"last evaluation is older than the latest materialization (run {latest.run_id})", run_id)
    verdict = "passed" if evaluation.passed else "failed with WARN severity (does not block)"
    return GateStatus(key, True, verdict, run_id)


def assert_blocking_checks_passed(
    instance: dg.DagsterInstance,
    asset_keys: Iterable[dg.AssetKey] | None = None,
    check_keys: Iterable[dg.AssetCheckKey] | None = None,
) -> list[GateStatus]:
    """Raise `BlockingCheckFailed` unless every blocking check on `asset_keys` passed on the latest data.

    `asset_keys=None` gates on every blocking check in the code location; `check_keys` overrides which
    checks count as blocking (tests, or a job that knows better). Returns the statuses for logging.
    """
    statuses = blocking_check_status(instance, asset_keys, check_keys)
    problems = [s for s in statuses if not s.ok]
    if problems:
        raise BlockingCheckFailed(problems)
    return statuses
