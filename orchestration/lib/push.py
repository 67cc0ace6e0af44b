"""The corrections outbox: planning corrections from the sync marts and pushing them to channels safely.

Owns (the `ops` tables themselves are created with the warehouse, orchestration.lib.warehouse)
- planning (`plan_corrections`): `marts.sync_<channel>__stock_corrections` → `ops.corrections`, one
  row per correction id (`on conflict do nothing`), with a deterministic idempotency key; a planned,
  approved or waiting correction the latest mart no longer contains (superseded by a newer snapshot,
  or the drift is gone) is marked `stale` and never pushed;
- pushing (`push_channel`), in Brandur's recovery points (reliability.md §1.5): claim the row
  (`pushed`, committed) → `set_level` with the idempotency key → `ops.sync_log` row and terminal
  status in ONE transaction. A row left `pushed` (pusher killed) or an `unknown` answer is settled by
  reading the channel back before anything new is sent for that level (I-4);
- the cross-run gate (`blocking_check_failures`): the latest evaluation of every blocking check on
  the assets the corrections come from must have passed, and for the latest materialization (I-5).

Nothing here reads the environment; tokens arrive inside the client the caller built.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

logger = logging.getLogger(__name__)

# Channels whose write carries an idempotency key the channel deduplicates on (Shopify `@idempotent`,
# Square `idempotency_key`): a resend with the same key after an unknown outcome cannot apply twice.
# Every other client (Amazon, ShipHero, Toast) is read-before-write without a key: never resent in the
# push that found its write did not land (the next plan re-opens it, MAX_ATTEMPTS).
KEYED_CLIENTS = frozenset({"shopify", "square"})
# Sends of one correction in one push before it is left `pushed` for the next run to settle.
MAX_SENDS = 3
# A correction whose write did not land (read back unchanged) on a channel without idempotency keys is
# `failed`, not resent blind; planning re-opens it while the mart still lists it, up to this many pushes.
MAX_ATTEMPTS = 3
NOT_LANDED = "the write did not land"
PENDING = ("planned", "approved")
OPEN = ("planned", "needs_review", "approved")

# --------------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------------


def idempotency_key_for(correction_id: str) -> str:
    """The key sent with every attempt of one correction: stable, ≤ 255 chars of [A-Za-z0-9._:-]."""
    return "invsync-" + hashlib.sha256(correction_id.encode()).hexdigest()[:48]


def corrections_relation(channel: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier("marts"), sql.Identifier(f"sync_{channel}__stock_corrections"))


@dataclass
class PlanResult:
    channel: str
    source_rows: int = 0
    inserted_planned: int = 0
    inserted_review: int = 0
    superseded: int = 0
    replanned: int = 0
    source_missing: bool = False

    def metadata(self) -> dict[str, Any]:
        return {"source_rows": self.source_rows, "planned": self.inserted_planned,
                "needs_review": self.inserted_review, "superseded_stale": self.superseded,
                "replanned_not_landed": self.replanned, "source_missing": self.source_missing}


def _autocommit(conn: psycopg.Connection) -> None:
    """Statements commit on their own and `conn.transaction()` is a real BEGIN/COMMIT (not a savepoint)."""
    if not conn.autocommit:
        conn.commit()
        conn.autocommit = True


def plan_corrections(conn: psycopg.Connection, channel: str, relation: sql.Composable | None = None) -> PlanResult:
    """Insert the mart's corrections for `channel` into the outbox, in one transaction.

    Only the newest correction per (sku, location) is taken. A correction id already in the outbox is
    left as it is (whatever its status), so planning twice plans once. Open corrections of this
    channel (planned, needs_review, approved) the mart no longer lists are marked `stale`: a newer
    snapshot superseded them, or the drift is gone; pushing them would write old numbers."""
    _autocommit(conn)
    relation = relation if relation is not None else corrections_relation(channel)
    result = PlanResult(channel)
    with conn.transaction():
        name = relation.as_string(conn)
        if conn.execute("select to_regclass(%s)", (name,)).fetchone()[0] is None:
            result.source_missing = True
            return result
        result.source_rows = conn.execute(
            sql.SQL("select count(*) from {} where channel = %s").format(relation), (channel,)).fetchone()[0]
        rows = conn.execute(sql.SQL("""
            with latest as (
                select distinct on (sku, location) *
                from {rel}
                where channel = %(channel)s
                order by sku, location, snapshot_at desc, correction_id desc
            )
            insert into ops.corrections (
                correction_id, idempotency_key, channel, sku, location, channel_sku, channel_location,
                from_quantity, to_quantity, drift_quantity, drift_class, snapshot_at, conflict_rule, status
            )
            select correction_id, 'invsync-' || left(encode(sha256(convert_to(correction_id, 'UTF8')), 'hex'), 48),
                   channel, sku, location, channel_sku, channel_location, from_quantity, to_quantity,
                   drift_quantity, drift_class, snapshot_at, conflict_rule,
                   case when coalesce(needs_review, false) or conflict_rule = 'manual'
                        then 'needs_review' else 'planned' end
            from latest
            on conflict do nothing
            returning status
        """).format(rel=relation), {"channel": channel}).fetchall()
        result.inserted_planned = sum(1 for (s,) in rows if s == "planned")
        result.inserted_review = sum(1 for (s,) in rows if s == "needs_review")
        # A correction whose write did not land on a channel without idempotency keys (read back unchanged)
        # was not resent then; the mart listing it again means the drift is still there: push it again,
        # a few times at most (the push reads the level first, so a write that landed late is not doubled).
        result.replanned = conn.execute(sql.SQL("""
            update ops.corrections c
            set status = case when c.decided_by is not null then 'approved' else 'planned' end,
                updated_at = now(),
                last_detail = left('re-planned after an attempt that did not land: ' || coalesce(c.last_detail, ''), 1000)
            where c.channel = %(channel)s and c.status = 'failed' and c.attempts < %(most)s
              and c.last_detail like %(marker)s
              and exists (select 1 from {rel} as m where m.channel = c.channel and m.correction_id = c.correction_id)
        """).format(rel=relation), {"channel": channel, "most": MAX_ATTEMPTS, "marker": f"%{NOT_LANDED}%"}).rowcount
        result.superseded = conn.execute(sql.SQL("""
            update ops.corrections c
            set status = 'stale', updated_at = now(),
                last_detail = 'superseded: the latest plan no longer contains this correction'
            where c.channel = %(channel)s and c.status = any(%(open)s)
              and not exists (
                  select 1 from (
                      select distinct on (sku, location) correction_id
                      from {rel} where channel = %(channel)s
                      order by sku, location, snapshot_at desc, correction_id desc
                  ) m where m.correction_id = c.correction_id)
        """).format(rel=relation), {"channel": channel, "open": list(OPEN)}).rowcount
    return result


# --------------------------------------------------------------------------------------------------
# Pushing
# --------------------------------------------------------------------------------------------------


@dataclass
class PushSummary:
    channel: str
    counts: dict[str, int] = field(default_factory=dict)
    settled_in_flight: int = 0
    unresolved: int = 0  # left `pushed`: the channel could not be read back; the next run settles them

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    def metadata(self) -> dict[str, Any]:
        return {**{f"corrections_{k}": v for k, v in sorted(self.counts.items())},
                "settled_in_flight": self.settled_in_flight, "unresolved_in_flight": self.unresolved}


_COLUMNS = ("correction_id, idempotency_key, channel, sku, location, channel_sku, channel_location, "
            "from_quantity, to_quantity, status, created_at, snapshot_at")


def _target(row: dict[str, Any]):
    from orchestration.lib.channels import LevelTarget

    return LevelTarget(row["channel_sku"], row["channel_location"])


def _as_of(row: dict[str, Any]) -> datetime:
    """The time the count is dated with (Square): fixed per correction so a resend is byte-identical.
    The planning time, unless it is older than Square accepts (24 h)."""
    created = row["created_at"]
    return created if datetime.now(UTC) - created < timedelta(hours=23) else datetime.now(UTC)


def _is_keyed(client) -> bool:
    return getattr(type(client), "channel", "") in KEYED_CLIENTS


def _log(conn: psycopg.Connection, row: dict[str, Any], requested_at: datetime, responded_at: datetime | None,
         outcome: str, http_status: int | None, detail: str) -> None:
    conn.execute(
        """insert into ops.sync_log (correction_id, idempotency_key, channel, sku, location, from_quantity,
               to_quantity, requested_at, responded_at, outcome, http_status, detail)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (row["correction_id"], row["idempotency_key"], row["channel"], row["sku"], row["location"],
         row["from_quantity"], row["to_quantity"], requested_at, responded_at, outcome, http_status,
         (detail or "")[:1000]))


def _finish(conn: psycopg.Connection, row: dict[str, Any], status: str, detail: str) -> None:
    conn.execute("""update ops.corrections set status = %s, updated_at = now(), last_detail = %s
                    where correction_id = %s and status = 'pushed'""",
                 (status, (detail or "")[:1000], row["correction_id"]))


def read_back(client, row: dict[str, Any]) -> tuple[str, Decimal | None, str]:
    """Settle an unknown outcome by reading the level: ('applied'|'unchanged'|'stale'|'unreadable', level, detail).

    The channel shows `to_quantity` → our write landed. It still shows `from_quantity` → it did not
    (yet). Anything else → someone else changed it: stale, re-plan from fresh data."""
    try:
        level = client.read_level(_target(row))
    except Exception as exc:  # noqa: BLE001 - any failure to read means we cannot settle now
        return "unreadable", None, f"read-back failed: {exc}"[:500]
    shown = level if level is not None else Decimal(0)
    if shown == Decimal(row["to_quantity"]):
        return "applied", level, f"read back {shown}: the write landed"
    if shown == Decimal(row["from_quantity"]):
        return "unchanged", level, f"read back {shown}: {NOT_LANDED}"
    return "stale", level, f"read back {shown}: changed by someone else (expected {row['from_quantity']} or {row['to_quantity']})"


def _send_and_settle(conn: psycopg.Connection, client, row: dict[str, Any], keyed: bool,
                     on_sent: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Send the claimed correction (status `pushed`, committed) until its outcome is known.

    Returns the terminal status written, or 'pushed' when it stays in flight for the next run."""
    for _ in range(MAX_SENDS):
        requested = datetime.now(UTC)
        result = client.set_level(_target(row), Decimal(row["from_quantity"]), Decimal(row["to_quantity"]),
                                  row["idempotency_key"], **({"as_of": _as_of(row)} if keyed else {}))
        if on_sent:
            on_sent(row)
        responded = datetime.now(UTC)
        if result.outcome == "accepted":
            # Taken by an asynchronous API: in flight until a later run reads it back (settle_in_flight).
            with conn.transaction():
                _log(conn, row, requested, responded, "unknown", result.http_status, result.detail)
            return "pushed"
        if result.outcome != "unknown":
            with conn.transaction():
                _log(conn, row, requested, responded, result.outcome, result.http_status, result.detail)
                _finish(conn, row, result.outcome, result.detail)
            return result.outcome
        verdict, _level, detail = read_back(client, row)
        status = {"applied": "applied", "stale": "stale"}.get(verdict)
        if verdict == "unchanged" and not keyed:
            status = "failed"
            detail += "; no idempotency key on this channel, so it is not resent (re-planned next cycle)"
        with conn.transaction():
            _log(conn, row, requested, responded, "unknown", result.http_status, f"{result.detail} | {detail}")
            if status:
                _finish(conn, row, status, detail)
        if status:
            return status
        if verdict == "unreadable":
            return "pushed"
        # unchanged on a keyed channel: resend with the SAME key.
    return "pushed"


def settle_in_flight(conn: psycopg.Connection, client, channel: str, summary: PushSummary | None = None) -> PushSummary:
    """Settle every correction of `channel` left `pushed` by a killed or interrupted pusher (I-4).

    Nothing new is sent for a level before its in-flight correction is settled."""
    _autocommit(conn)
    summary = summary or PushSummary(channel)
    keyed = _is_keyed(client)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"select {_COLUMNS}, updated_at <= now() - make_interval(secs => %s) as due "  # noqa: S608 - constant column list
                           "from ops.corrections where channel = %s and status = 'pushed' "
                           "order by created_at, correction_id",
                           (float(getattr(client, "settle_after", 0.0)), channel)).fetchall()
    for row in rows:
        if not row["due"]:  # an accepted write still being applied by the channel
            summary.unresolved += 1
            continue
        requested = datetime.now(UTC)
        verdict, _level, detail = read_back(client, row)
        if verdict == "unreadable":
            summary.unresolved += 1
            continue
        if verdict == "unchanged" and keyed:
            status = _send_and_settle(conn, client, row, keyed)
        else:
            status = {"applied": "applied", "stale": "stale", "unchanged": "failed"}[verdict]
            with conn.transaction():
                _log(conn, row, requested, datetime.now(UTC), status, None, f"settled by reading back: {detail}")
                _finish(conn, row, status, f"settled by reading back: {detail}")
        summary.settled_in_flight += 1
        if status == "pushed":
            summary.unresolved += 1
        else:
            summary.add(status)
    return summary


def claim(conn: psycopg.Connection, correction_id: str) -> dict[str, Any] | None:
    """Recovery point 1: mark the correction in flight and commit, unless another pusher has it or
    an earlier correction for the same level is still in flight."""
    _autocommit(conn)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"""
            update ops.corrections c set status = 'pushed', attempts = attempts + 1, updated_at = now()
            where c.correction_id = %s and c.status = any(%s)
              and not exists (select 1 from ops.corrections p where p.channel = c.channel and p.sku = c.sku
                              and p.location = c.location and p.status = 'pushed')
            returning {_COLUMNS}""", (correction_id, list(PENDING))).fetchone()  # noqa: S608 - constant column list


def push_channel(conn: psycopg.Connection, client, channel: str, *, limit: int | None = None,
                 on_sent: Callable[[dict[str, Any]], None] | None = None) -> PushSummary:
    """Settle in-flight corrections of `channel`, then push its planned/approved ones, oldest first.

    `conn` is a pusher-role connection (not autocommit); `client` the channel's API client.
    `on_sent` is called right after each `set_level` returns (tests use it to kill the process)."""
    _autocommit(conn)
    summary = settle_in_flight(conn, client, channel)
    keyed = _is_keyed(client)
    ids = [r[0] for r in conn.execute(
        "select correction_id from ops.corrections where channel = %s and status = any(%s) "
        "order by created_at, correction_id limit %s", (channel, list(PENDING), limit)).fetchall()]
    for correction_id in ids:
        row = claim(conn, correction_id)
        if row is None:
            continue
        if row["channel_sku"] is None or row["channel_location"] is None:
            with conn.transaction():
                _finish(conn, row, "failed", "no channel_sku/channel_location: cannot address the level")
            summary.add("failed")
            continue
        status = _send_and_settle(conn, client, row, keyed, on_sent)
        if status == "pushed":
            summary.unresolved += 1
        else:
            summary.add(status)
    return summary


# --------------------------------------------------------------------------------------------------
# The cross-run gate (I-5)
# --------------------------------------------------------------------------------------------------


class PushRefused(RuntimeError):
    """A blocking check on the data the corrections came from failed, is missing or is out of date."""


def blocking_check_failures(instance, asset_graph, source_keys: Iterable, include_upstream: bool = True,
                            verdict_only: Collection = frozenset()) -> list[str]:
    """Why pushing from `source_keys` is not allowed right now (empty list: allowed).

    Looks at every blocking check on the source assets (and their ancestors), as recorded in the
    instance by any run: its latest execution must exist, have finished, have passed (a failed
    WARN-severity check does not block) and have evaluated the asset's latest materialization.
    For the checks in `verdict_only` (the data tests a quick cycle leaves to the full build) only the
    verdict counts: a failure blocks every push until a build passes them again, but a pass on an older
    materialization is enough."""
    from dagster import AssetCheckSeverity
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    keys = set(source_keys)
    unknown = sorted(k.to_user_string() for k in keys if not asset_graph.has(k))
    if unknown:
        # Fail closed: without the asset we cannot know which checks guard it.
        return [f"{name} is not defined in this code location, so its blocking checks cannot be verified"
                for name in unknown]
    if include_upstream:
        for key in list(keys):
            if asset_graph.has(key):
                keys |= set(asset_graph.get_ancestor_asset_keys(key))
    keys = {k for k in keys if asset_graph.has(k)}
    check_keys = [ck for ck in asset_graph.get_check_keys_for_assets(keys) if asset_graph.get_check_spec(ck).blocking]
    if not check_keys:
        return []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    # One query for the latest materialization of every checked asset (not one per check).
    newest = {
        record.asset_entry.asset_key: record.asset_entry.last_materialization_record.storage_id
        for record in instance.get_asset_records(list({ck.asset_key for ck in check_keys}))
        if record.asset_entry.last_materialization_record is not None
    }
    problems = []
    for ck in sorted(check_keys, key=lambda c: (c.asset_key.to_user_string(), c.name)):
        name = f"{ck.asset_key.to_user_string()}:{ck.name}"
        record = latest.get(ck)
        if record is None:
            problems.append(f"{name} has never been evaluated")
            continue
        if record.status == AssetCheckExecutionRecordStatus.PLANNED:
            problems.append(f"{name} has not finished (run {record.run_id})")
            continue
        evaluation = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
        if record.status == AssetCheckExecutionRecordStatus.FAILED:
            severity = getattr(evaluation, "severity", AssetCheckSeverity.ERROR)
            if severity == AssetCheckSeverity.ERROR:
                problems.append(f"{name} failed (run {record.run_id})")
                continue
        target = getattr(evaluation, "target_materialization_data", None)
        if ck in verdict_only:
            continue
        if target is not None and ck.asset_key in newest and target.storage_id < newest[ck.asset_key]:
            problems.append(f"{name} evaluated an older materialization than the latest one")
    return problems


def require_checks_passed(instance, asset_graph, source_keys: Sequence) -> None:
    problems = blocking_check_failures(instance, asset_graph, source_keys)
    if problems:
        raise PushRefused("refusing to push: " + "; ".join(problems))
