"""The review queue: corrections waiting in `needs_review` for a person, and their decisions.

Owns listing the queue, approving and rejecting (status change and an `ops.review_decisions` row
in ONE transaction, as the pusher role), the sync alerts listing, and the CLI subcommands
(`add_sync_commands`) the command line wires in. Approved corrections are pushed by the next push run.
"""

from __future__ import annotations

import argparse
import csv
import sys

import psycopg
from psycopg.rows import dict_row


class ReviewError(RuntimeError):
    """A decision that cannot be made: unknown id, or the correction is not waiting for review."""


QUEUE_COLUMNS = ("correction_id", "channel", "sku", "location", "from_quantity", "to_quantity",
                 "drift_class", "conflict_rule", "snapshot_at", "created_at")


def list_queue(conn: psycopg.Connection, channel: str | None = None, status: str = "needs_review") -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"select {', '.join(QUEUE_COLUMNS)}, status, decided_by from ops.corrections "  # noqa: S608 - constant columns
            "where status = %s and (%s::text is null or channel = %s) order by created_at, correction_id",
            (status, channel, channel)).fetchall()


def decide(conn: psycopg.Connection, correction_id: str, decision: str, by: str, reason: str | None = None) -> dict:
    """Approve or reject one correction in `needs_review`; returns the updated row."""
    if decision not in ("approved", "rejected"):
        raise ReviewError(f"decision must be approved or rejected, not {decision!r}")
    if not by or not by.strip():
        raise ReviewError("say who decides (--by NAME)")
    if decision == "rejected" and not (reason or "").strip():
        raise ReviewError("a rejection needs a reason (--reason TEXT)")
    if not conn.autocommit:
        conn.commit()
        conn.autocommit = True
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """update ops.corrections set status = %s, decided_by = %s, updated_at = now()
               where correction_id = %s and status = 'needs_review'
               returning correction_id, channel, sku, location, from_quantity, to_quantity, status""",
            (decision, by.strip(), correction_id)).fetchone()
        if row is None:
            current = cur.execute("select status from ops.corrections where correction_id = %s",
                                  (correction_id,)).fetchone()
            if current is None:
                raise ReviewError(f"no correction {correction_id!r}; `inventory-sync review list` shows the queue")
            raise ReviewError(f"correction {correction_id} is {current['status']}, not needs_review; only "
                              "corrections waiting for review can be approved or rejected")
        cur.execute("""insert into ops.review_decisions (correction_id, decision, decided_by, reason)
                       values (%s, %s, %s, %s)""", (correction_id, decision, by.strip(), reason))
    return row


def list_alerts(conn: psycopg.Connection, limit: int = 50) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("select raised_at, job_name, run_id, message from ops.sync_alerts "
                           "order by raised_at desc limit %s", (limit,)).fetchall()


# --------------------------------------------------------------------------------------------------
# CLI subcommands (wired by orchestration/cli.py)
# --------------------------------------------------------------------------------------------------


def _write_csv(rows: list[dict], columns) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])


def _prepare(settings):
    from orchestration.cli import prepare

    return prepare(settings, quiet=True)


def cmd_review(args, settings) -> int:
    from orchestration.cli import CliError

    wh = _prepare(settings)
    with wh.connect("pusher") as conn:
        if args.review_action == "list":
            rows = list_queue(conn, args.channel)
            _write_csv(rows, QUEUE_COLUMNS)
            print(f"{len(rows)} correction(s) waiting for review", file=sys.stderr)
            return 0
        decision = "approved" if args.review_action == "approve" else "rejected"
        try:
            row = decide(conn, args.correction_id, decision, args.by, args.reason)
        except ReviewError as exc:
            raise CliError(str(exc)) from None
    print(f"{row['correction_id']}: {decision} by {args.by.strip()} ({row['channel']} {row['sku']} @ "
          f"{row['location']}: {row['from_quantity']} → {row['to_quantity']})"
          + ("; the next push run sends it" if decision == "approved" else ""))
    return 0


def cmd_alerts(args, settings) -> int:
    wh = _prepare(settings)
    with wh.connect("pusher") as conn:
        rows = list_alerts(conn, args.limit)
    _write_csv(rows, ("raised_at", "job_name", "run_id", "message"))
    return 0 if not rows else 1


def cmd_webhooks(args, settings) -> int:
    from orchestration.cli import CliError
    from orchestration.lib.webhooks import serve_webhooks

    wh = _prepare(settings)
    try:
        return serve_webhooks(wh, settings, args.host, args.port, args.square_notification_url)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None


def add_sync_commands(sub: argparse._SubParsersAction) -> None:
    """Add `review {list,approve,reject}`, `alerts` and `webhooks` to the CLI's subparsers."""
    s = sub.add_parser("review", help="corrections waiting for a person: list, approve, reject")
    actions = s.add_subparsers(dest="review_action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="the review queue as CSV")
    a.add_argument("--channel", default=None)
    a = actions.add_parser("approve", help="approve a correction; the next push run sends it")
    a.add_argument("correction_id", metavar="CORRECTION_ID")
    a.add_argument("--by", required=True, metavar="NAME")
    a.add_argument("--reason", default=None, metavar="TEXT")
    a = actions.add_parser("reject", help="reject a correction; it is never pushed")
    a.add_argument("correction_id", metavar="CORRECTION_ID")
    a.add_argument("--by", required=True, metavar="NAME")
    a.add_argument("--reason", required=True, metavar="TEXT")
    s.set_defaults(func=cmd_review)

    s = sub.add_parser("alerts", help="failed sync runs raised by the run-failure sensor (exit 1 if any)")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_alerts)

    s = sub.add_parser("webhooks", help="serve the Shopify/Square webhook intake in the foreground")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8787)
    s.add_argument("--square-notification-url", default=None,
                   help="the exact URL registered with Square (it is part of the signature)")
    s.set_defaults(func=cmd_webhooks)
