"""The sync stage, built from the channel registry: planning, pushing, sensors, the nightly schedule.

- `ops/corrections` (group sync): plans `marts/sync_<channel>__stock_corrections` into the outbox.
- `push/<channel>/stock_corrections` (group sync): re-checks the blocking checks (I-5, across runs),
  settles in-flight corrections, pushes planned/approved ones (I-4). `push_corrections_job` runs them.
- `refresh_<channel>_job`: the channel's `raw/...` assets and the quick path downstream of them (see
  `quick_path`); `quick_sync_job`: the quick path from every channel, then the pushes;
  `advisory_checks_job`: the checks that gate nothing, which quick cycles leave out.
- `channel_changes_sensor` (change feeds), `webhook_events_sensor` (webhook deliveries) request
  refresh runs; `corrections_planned_sensor` requests push runs; `advisory_checks_sensor` requests
  the advisory checks after each quick run; `sync_run_failure_sensor` records alerts;
  `nightly_reconciliation_schedule` runs `reconcile_inventory_job` at 02:00 UTC.
Sensors only read and request runs with deterministic run keys; their cursors are JSON.
"""


import hashlib
import itertools
import json
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from orchestration.defs.extract.factory import channel_resource_key
from orchestration.lib.dbt import QUICK_BUILD_TAG
from orchestration.lib.extract import position
from orchestration.lib.push import (
    PENDING,
    blocking_check_failures,
    plan_corrections,
    push_channel,
)
from orchestration.lib.registry import ChannelConfig, Registry
from orchestration.lib.resources import WarehouseResource
from orchestration.lib.ui_metadata import push_metadata

logger = logging.getLogger(__name__)

CORRECTIONS_KEY = dg.AssetKey(["ops", "corrections"])
CORRECTIONS_HISTORY_KEY = dg.AssetKey(["ops", "corrections_history"])  # the dbt source on the same table
QUICK_SYNC_JOB = "quick_sync_job"
COMPLETE_QUICK_JOB = "complete_quick_cycles_job"
ADVISORY_JOB = "advisory_checks_job"
PROBE_LIMIT = 500  # change-feed records a sensor tick looks at, at most
WEBHOOK_CLIENTS = ("shopify", "square")


def source_key(channel: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", f"sync_{channel}__stock_corrections"])


def push_key(channel: str) -> dg.AssetKey:
    return dg.AssetKey(["push", channel, "stock_corrections"])


def raw_keys(channel: ChannelConfig) -> list[dg.AssetKey]:
    return [dg.AssetKey(["raw", channel.name, e.name]) for e in channel.client_class.entities]


def refresh_job_name(channel: str) -> str:
    return f"refresh_{channel}_job"


@dataclass(frozen=True)
class Guards:
    """The checks the quick path knows about: the blocking checks (every one runs in every cycle) and
    the Great Expectations checks (run on whatever a cycle rebuilds)."""

    blocking: tuple[dg.AssetCheckKey, ...] = ()
    gx: tuple[dg.AssetCheckKey, ...] = ()

    @property
    def advisory(self) -> tuple[dg.AssetCheckKey, ...]:
        """The Great Expectations checks that gate nothing (they warn)."""
        return tuple(key for key in self.gx if key not in self.blocking)

    def left_to_full_build(self, graph) -> set[dg.AssetCheckKey]:
        """The data tests a quick cycle does not run: every check that is neither a GX check nor a test of
        an outbound mart (what the corrections are planned from, and its inputs)."""
        outbound: set[dg.AssetKey] = set()
        if graph.has(CORRECTIONS_KEY):
            parents = set(graph.get(CORRECTIONS_KEY).parent_keys)
            outbound = parents | {k for p in parents if graph.has(p) for k in graph.get(p).parent_keys}
        keep = set(self.gx) | set(self.blocking)
        return {key for key in graph.asset_check_keys if key not in keep and key.asset_key not in outbound}


def _gate(context, channel: str, guards: Guards | None) -> list[str]:
    """The push gate for one channel's sync mart (I-5): every blocking check upstream must have passed on
    the latest data, except that the data tests a quick cycle does not run count by their last verdict
    (with `guards` None, none are exempt)."""
    graph = _asset_graph(context)
    exempt = guards.left_to_full_build(graph) if guards is not None else set()
    return blocking_check_failures(context.instance, graph, [source_key(channel)], verdict_only=exempt)


def _asset_graph(context):
    """The whole asset graph the job was built from (the code location's), not the job's subset: the
    blocking checks live on assets the push job does not select. Works in daemon-launched runs and in
    execute_in_process / dg.materialize alike (which have no repository)."""
    graph = context.job_def.asset_layer.asset_graph
    return getattr(graph, "source_asset_graph", graph)


# --------------------------------------------------------------------------------------------------
# Assets
# --------------------------------------------------------------------------------------------------


def build_corrections_asset(channels: list[ChannelConfig], guards: Guards | None = None) -> dg.AssetsDefinition:
    @dg.asset(
        key=CORRECTIONS_KEY, group_name="sync", kinds={"postgres"},
        deps=[source_key(c.name) for c in channels], required_resource_keys={"warehouse"},
        description="ops.corrections: the outbox, planned from each channel's sync mart (once per correction id; "
                    "open corrections the mart no longer lists are marked stale). Channels whose blocking "
                    "checks have not passed are not planned.",
    )
    def _corrections(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        metadata: dict = {}
        with context.resources.warehouse.connect("pusher") as conn:
            for channel in channels:
                problems = _gate(context, channel.name, guards)
                if problems:
                    context.log.warning(f"{channel.name}: not planned: {'; '.join(problems)}")
                    metadata[f"{channel.name}_refused"] = "; ".join(problems)
                    continue
                result = plan_corrections(conn, channel.name)
                metadata.update({f"{channel.name}_{k}": v for k, v in result.metadata().items()})
        return dg.MaterializeResult(metadata=metadata)

    return _corrections


def _push_one(context, channel: ChannelConfig):
    api = getattr(context.resources, channel_resource_key(channel.name))
    with api.client(channel) as client, context.resources.warehouse.connect("pusher") as conn:
        summary = push_channel(conn, client, channel.name)
        counts = push_metadata(conn, channel.name)
    return summary, counts


def build_push_asset(channels: list[ChannelConfig], guards: Guards | None = None) -> dg.AssetsDefinition:
    """`push/<channel>/stock_corrections` for every channel, as one subsettable step that pushes to the
    channels concurrently (one thread each; their APIs and rate limits are independent)."""
    specs = [
        dg.AssetSpec(
            key=push_key(channel.name), group_name="sync", kinds={"postgres", channel.client}, deps=[CORRECTIONS_KEY],
            description=(f"Corrections pushed to {channel.name}: re-checks the blocking checks of "
                         f"{source_key(channel.name).to_user_string()} (and upstream) in the instance, settles "
                         "in-flight corrections by reading the level back, then pushes planned/approved ones with "
                         "their idempotency key; every attempt is in ops.sync_log."),
        )
        for channel in channels
    ]

    @dg.multi_asset(
        name="push_corrections", specs=specs, can_subset=True,
        required_resource_keys={"warehouse", *(channel_resource_key(c.name) for c in channels)},
        retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
    )
    def _push(context: dg.AssetExecutionContext):
        selected = [c for c in channels if push_key(c.name) in context.selected_asset_keys]
        if context.run.tags.get("inventory-sync/push") == "false":
            for c in selected:
                yield dg.MaterializeResult(asset_key=push_key(c.name),
                                           metadata={"skipped": "run tagged inventory-sync/push=false"})
            return
        # I-5: the blocking checks are re-read from the instance right before writing, per channel.
        refused, ready = [], []
        for c in selected:
            problems = _gate(context, c.name, guards)
            if problems:
                refused.append(f"{c.name}: refusing to push: {'; '.join(problems)}")
            else:
                ready.append(c)
        errors = []
        with ThreadPoolExecutor(max_workers=max(len(ready), 1), thread_name_prefix="push") as pool:
            futures = {pool.submit(_push_one, context, c): c for c in ready}
            for future in as_completed(futures):
                c = futures[future]
                try:
                    summary, counts = future.result()
                except Exception as exc:  # noqa: BLE001 - reported below, after the others have pushed
                    context.log.error(f"{c.name}: push failed: {type(exc).__name__}: {exc}")
                    errors.append(f"{c.name}: {type(exc).__name__}: {exc}")
                    continue
                if summary.unresolved:
                    context.log.warning(f"{c.name}: {summary.unresolved} correction(s) still in flight; "
                                        "the next push run settles them by reading the level back")
                yield dg.MaterializeResult(asset_key=push_key(c.name), metadata={**summary.metadata(), **counts})
        if refused or errors:
            # A refusal is not retried (the check must pass first); a failed push is (keys are idempotent).
            raise dg.Failure(description="; ".join(refused + errors), allow_retries=bool(errors))

    return _push


# --------------------------------------------------------------------------------------------------
# Sensors
# --------------------------------------------------------------------------------------------------


def _load_cursor(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def pending_run_key(rows: list[tuple[str, int, str]], now: datetime | None = None) -> str:
    """sha256 over the sorted (correction id, attempts) of planned/approved/in-flight corrections.

    In-flight rows add the current hour, so a correction that could not be settled is retried hourly
    instead of being deduplicated forever."""
    parts = sorted(f"{cid}:{attempts}" for cid, attempts, _ in rows)
    if any(status == "pushed" for _, _, status in rows):
        parts.append((now or datetime.now(UTC)).strftime("retry:%Y-%m-%dT%H"))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def build_corrections_planned_sensor(job, default_status) -> dg.SensorDefinition:
    @dg.sensor(name="corrections_planned_sensor", job=job, minimum_interval_seconds=10,
               required_resource_keys={"warehouse"}, default_status=default_status,
               description="Requests push_corrections_job while planned/approved (or in-flight) corrections exist; "
                           "run_key = sha256 of their sorted ids, so two evaluations request one run.")
    def _sensor(context: dg.SensorEvaluationContext):
        with context.resources.warehouse.connect("pusher") as conn:
            rows = conn.execute(
                "select correction_id, attempts, status from ops.corrections where status = any(%s) "
                "order by correction_id", (list(PENDING) + ["pushed"],)).fetchall()
        if not rows:
            return dg.SkipReason("no planned, approved or in-flight corrections")
        run_key = pending_run_key(rows)
        context.update_cursor(json.dumps({"run_key": run_key, "corrections": len(rows)}))
        return dg.RunRequest(run_key=run_key, tags={"inventory-sync/corrections": str(len(rows))})

    return _sensor


def build_channel_changes_sensor(channels: list[ChannelConfig], jobs: dict, default_status) -> dg.SensorDefinition:
    feeds = {c.name: next(e for e in c.client_class.entities if e.kind == "movements") for c in channels}

    @dg.sensor(name="channel_changes_sensor", jobs=[jobs[name] for name in feeds], minimum_interval_seconds=5,
               required_resource_keys={"warehouse", *(channel_resource_key(n) for n in feeds)},
               default_status=default_status,
               description="Polls each channel's change feed (at most a page past the stored position) and requests "
                           "refresh_<channel>_job; run_key = channel + newest change seen.")
    def _sensor(context: dg.SensorEvaluationContext):
        from orchestration.lib.channels import Backlog, MovementCursor

        cursor = _load_cursor(context.cursor)
        requests = []
        with context.resources.warehouse.connect("loader") as conn:
            stored = dict(conn.execute("select channel || '/' || stream, cursor_value from ops.extract_cursors").fetchall())
        for channel in channels:
            entity = feeds[channel.name]
            seen = max(position(stored.get(f"{channel.name}/{entity.name}")), position(cursor.get(channel.name)))
            api = getattr(context.resources, channel_resource_key(channel.name))
            try:
                with api.client(channel) as client:
                    since = MovementCursor(seen[0], seen[1]) if seen[1] or seen[0].year > 1970 else None
                    newest = max(((r.cursor_at, r.source_id) for r in itertools.islice(
                        getattr(client, entity.reader)(since), PROBE_LIMIT)
                        if not isinstance(r, Backlog) and r.cursor_at is not None), default=None)
            except Exception as exc:  # noqa: BLE001 - one channel down must not stop the others
                context.log.warning(f"{channel.name}: change feed not polled: {exc}")
                continue
            if newest is None or newest <= seen:
                continue
            at = newest[0].astimezone(UTC).isoformat()
            cursor[channel.name] = {"at": at, "id": newest[1]}
            requests.append(dg.RunRequest(run_key=f"changes:{channel.name}:{at}:{newest[1]}",
                                          job_name=refresh_job_name(channel.name)))
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return requests or dg.SkipReason("no new changes")

    return _sensor


def build_webhook_events_sensor(by_client: dict[str, list[str]], jobs: dict, default_status) -> dg.SensorDefinition:
    targets = sorted({name for names in by_client.values() for name in names})

    @dg.sensor(name="webhook_events_sensor", jobs=[jobs[n] for n in targets], minimum_interval_seconds=5,
               required_resource_keys={"warehouse"}, default_status=default_status,
               description="Turns new rows of ops.webhook_events into refresh_<channel>_job runs "
                           "(run_key = channel + newest delivery id). Webhooks never write the ledger.")
    def _sensor(context: dg.SensorEvaluationContext):
        cursor = _load_cursor(context.cursor)
        last = int(cursor.get("last_id", 0))
        with context.resources.warehouse.connect("pusher") as conn:
            rows = conn.execute("select channel, max(webhook_event_id) from ops.webhook_events "
                                "where webhook_event_id > %s group by channel order by channel", (last,)).fetchall()
        requests = []
        for client_name, newest in rows:
            for name in by_client.get(client_name, []):
                requests.append(dg.RunRequest(run_key=f"webhook:{name}:{newest}", job_name=refresh_job_name(name)))
        if rows:
            context.update_cursor(json.dumps({"last_id": max(n for _, n in rows)}))
        return requests or dg.SkipReason("no new webhook deliveries")

    return _sensor


def build_advisory_checks_sensor(after: list, job, default_status) -> dg.SensorDefinition:
    @dg.run_status_sensor(name="advisory_checks_sensor", run_status=dg.DagsterRunStatus.SUCCESS,
                          monitored_jobs=after, request_job=job, default_status=default_status,
                          description="After each successful quick cycle (quick_sync_job, refresh_<channel>_job), "
                                      "requests advisory_checks_job on what it built; run_key = that run's id.")
    def _sensor(context: dg.RunStatusSensorContext):
        return dg.RunRequest(run_key=f"advisory:{context.dagster_run.run_id}")

    return _sensor


def build_run_failure_sensor(default_status) -> dg.SensorDefinition:
    @dg.run_failure_sensor(name="sync_run_failure_sensor", default_status=default_status,
                           description="Records every failed run of this code location in ops.sync_alerts "
                                       "(`inventory-sync alerts` lists them) and logs it.")
    def _sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
        record_alert(warehouse, context.dagster_run.run_id, context.dagster_run.job_name,
                     (context.failure_event.message or "run failed")[:2000])

    return _sensor


def record_alert(warehouse, run_id: str, job_name: str, message: str) -> None:
    """Once per run id (a sensor evaluated twice records one alert)."""
    logger.error("sync alert: run %s of %s failed: %s", run_id, job_name, message)
    with warehouse.connect("pusher") as conn:
        conn.execute("insert into ops.sync_alerts (run_id, job_name, message) values (%s, %s, %s) "
                     "on conflict (run_id) do nothing", (run_id, job_name, message))


# --------------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------------


def quick_path(start: dg.AssetSelection, guards: Guards) -> dg.AssetSelection:
    """The part of `start` a quick cycle rebuilds, and the checks it runs.

    Rebuilt: what the corrections are planned from, and everything a blocking check guards (the push gate
    wants each blocking check to have passed on its asset's latest data, and the checks read across
    tables: open layers against positions), each with everything upstream. Checked: every blocking check,
    the gating Great Expectations checks on what is rebuilt, and the dbt tests of the marts that leave the
    warehouse (the sync marts and the drift they are planned from). The remaining marts (movements, cost of
    goods, dims) and the ~90 data tests of the other models wait for a full build; the push gate counts
    those tests by their last verdict (`Guards.left_to_full_build`). The advisory Great Expectations checks
    (they gate nothing) run in a run of their own after the cycle (`advisory_checks_job`), off the path
    from an event to its correction."""

    def checks_of(selection: dg.AssetSelection) -> dg.AssetSelection:
        return selection - selection.without_checks()

    guarded = dg.AssetSelection.assets(CORRECTIONS_KEY, *{key.asset_key for key in guards.blocking})
    rebuilt = start & guarded.upstream()
    outbound = checks_of(dg.AssetSelection.assets(CORRECTIONS_KEY).upstream(depth=2))
    checks = checks_of(rebuilt) & (dg.AssetSelection.checks(*guards.gx) | outbound)
    return (rebuilt.without_checks() | (checks - dg.AssetSelection.checks(*guards.advisory))
            | dg.AssetSelection.checks(*guards.blocking))


def build_sync_definitions(registry: Registry,
                           default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
                           guards: Guards | None = None) -> dg.Definitions:
    """The sync stage for the registry's enabled channels (merge into the one Definitions). `guards` names
    the checks of the other stages (orchestration.definitions passes the quality stage's); without them the
    push gate exempts no check."""
    selection_guards = guards or Guards()
    channels = registry.enabled
    history = dg.AssetSpec(
        CORRECTIONS_HISTORY_KEY, group_name="sync", kinds={"postgres"},
        description="ops.corrections as the drift model reads it: when each channel level was last set by a "
                    "correction that applied (written by the push, read by marts/fct_channel_drift to tell a "
                    "change the channel was never given from one made in the channel).")
    assets = [build_corrections_asset(channels, guards), history] + (
        [build_push_asset(channels, guards)] if channels else [])
    push_keys = [push_key(c.name) for c in channels]
    not_pushes = dg.AssetSelection.all() - dg.AssetSelection.assets(*push_keys)
    reconcile = dg.define_asset_job(
        "reconcile_inventory_job", selection=not_pushes,
        description="Nightly full reconciliation: extract every channel, build, check and plan corrections "
                    "(pushing is left to corrections_planned_sensor → push_corrections_job).")
    schedule = dg.ScheduleDefinition(
        name="nightly_reconciliation_schedule", job=reconcile, cron_schedule="0 2 * * *",
        execution_timezone="UTC", default_status=dg.DefaultScheduleStatus(default_status.value))
    jobs: dict = {c.name: dg.define_asset_job(
        refresh_job_name(c.name),
        selection=dg.AssetSelection.assets(*raw_keys(c))
        | quick_path(dg.AssetSelection.assets(*raw_keys(c)).downstream(), selection_guards),
        tags={QUICK_BUILD_TAG: "true"},
        description=f"Extract {c.name} and take the quick path from it: rebuild what its corrections and the "
                    "blocking checks depend on, re-check and re-plan (the full build with every dbt data test is "
                    "sync_inventory_job and the nightly reconciliation).")
        for c in channels}
    sensors = [build_run_failure_sensor(default_status)]
    quick = dg.define_asset_job(
        QUICK_SYNC_JOB,
        selection=quick_path(dg.AssetSelection.all(), selection_guards) | dg.AssetSelection.assets(*push_keys),
        tags={QUICK_BUILD_TAG: "true"},
        description="One quick sync cycle: extract every channel, rebuild only what corrections and the blocking "
                    "checks depend on, run the gating Great Expectations checks and the dbt tests of the outbound "
                    "marts, plan and push (advisory_checks_job runs the advisory checks after it). The other marts "
                    "and data tests wait for a full build (sync_inventory_job, the nightly reconciliation).")
    quick_selection = quick_path(dg.AssetSelection.all(), selection_guards)
    every_check = dg.AssetSelection.all() - dg.AssetSelection.all().without_checks()
    complete = dg.define_asset_job(
        COMPLETE_QUICK_JOB,
        selection=(not_pushes.without_checks() - quick_selection.without_checks())
        | (every_check - (quick_selection - quick_selection.without_checks())),
        description="What quick cycles leave to a full build, and only that: the marts off the sync path and every "
                    "check the quick path does not run, on the data the last quick cycle built (no extraction, no "
                    "push). After quick cycles with nothing new since, it leaves the warehouse as a full build "
                    "would; the demo ends with it.")
    all_jobs = [reconcile, quick, complete, *jobs.values()]
    if selection_guards.advisory:
        advisory = dg.define_asset_job(
            ADVISORY_JOB, selection=dg.AssetSelection.checks(*selection_guards.advisory),
            description="The advisory Great Expectations checks (drift in the wrong unit, drift within tolerance, "
                        "negative positions), on the marts as they are: they gate nothing, so quick cycles leave "
                        "them to this run, which advisory_checks_sensor requests after each one.")
        all_jobs.append(advisory)
        sensors.append(build_advisory_checks_sensor([quick, *jobs.values()], advisory, default_status))
    if channels:
        push_job = dg.define_asset_job(
            "push_corrections_job", selection=dg.AssetSelection.assets(*push_keys),
            description="Push planned/approved corrections to every channel, after re-checking blocking checks.")
        all_jobs.append(push_job)
        sensors.append(build_corrections_planned_sensor(push_job, default_status))
    feed_channels = [c for c in channels if any(e.kind == "movements" for e in c.client_class.entities)]
    if feed_channels:
        sensors.append(build_channel_changes_sensor(feed_channels, jobs, default_status))
    by_client: dict[str, list[str]] = {}
    for c in channels:
        if c.client in WEBHOOK_CLIENTS:
            by_client.setdefault(c.client, []).append(c.name)
    if by_client:
        sensors.append(build_webhook_events_sensor(by_client, jobs, default_status))
    return dg.Definitions(assets=assets, jobs=all_jobs, sensors=sensors, schedules=[schedule])
