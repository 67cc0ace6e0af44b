"""One sync cycle run through Dagster against the project's persistent instance (runs stored in Postgres)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from orchestration.settings import Settings


@dataclass
class CycleResult:
    success: bool
    run_id: str
    seconds: float
    materialized: int
    checks_failed: list[str] = field(default_factory=list)

    def summary(self, what: str = "sync cycle") -> str:
        status = "succeeded" if self.success else "FAILED"
        lines = [f"{what} {status} in {self.seconds:.1f}s: {self.materialized} assets materialized (run {self.run_id})"]
        lines += [f"  failed check: {name}" for name in self.checks_failed]
        return "\n".join(lines)


@contextlib.contextmanager
def _channel_log_to(stream):
    """Send the channel clients' log records to `stream` only, while the block runs."""
    channels = logging.getLogger("orchestration.lib.channels")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    before = channels.propagate
    channels.addHandler(handler)
    channels.propagate = False
    try:
        yield
    finally:
        channels.removeHandler(handler)
        channels.propagate = before


def run_cycle(settings: Settings, push: bool = True, quiet: bool = False, data_docs: bool = True,
              quick: bool = False, job_name: str | None = None) -> CycleResult:
    """One run of sync_inventory_job (every model and check), or with `quick` of quick_sync_job (the quick
    path: see orchestration/defs/sync/factory.py), in this process; `job_name` runs another job.
    `data_docs=False` leaves the GX Data Docs site to the caller (the demo builds it once, at the end).
    One run at a time per process: Dagster reconfigures Python logging at the start of every run."""
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.defs.sync.factory import QUICK_SYNC_JOB

    defs = build_definitions(settings)
    job = defs.resolve_job_def(job_name or (QUICK_SYNC_JOB if quick else "sync_inventory_job"))
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance, contextlib.ExitStack() as stack:
        # dagster-postgres opens a new connection for every event it stores unless told to pool (as the
        # webserver does); a cycle stores several hundred events (every planned and evaluated check).
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=8)
        run_config = {"loggers": {"console": {"config": {"log_level": "ERROR" if quiet else "INFO"}}}}
        if quiet:
            # dbt's own log (which dagster-dbt re-emits on stdout) and the channel clients' retry notes go
            # to a file instead of the terminal; the run's full log is in the Dagster instance either way.
            log_dir = settings.home / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = stack.enter_context(open(log_dir / "last-cycle.log", "w"))
            stack.enter_context(contextlib.redirect_stdout(log_file))
            stack.enter_context(_channel_log_to(log_file))
        result = job.execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False, tags={"inventory-sync/push": str(push).lower()}
        )
        materialized = len(result.get_asset_materialization_events())
        failed = [
            f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
        ]
    if data_docs:
        from orchestration.lib.gx import build_data_docs

        build_data_docs(settings.home)
    return CycleResult(result.success, result.run_id, time.monotonic() - started, materialized, failed)

