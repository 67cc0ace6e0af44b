"""The outbox and the pusher against real PostgreSQL and the HTTP simulators: planned once, applied at
most once whatever is killed or dropped (I-4), stale compares re-planned, never forced (F-CAS,
F-KILL-PUSH)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal

import pytest

from orchestration.lib.push import claim, idempotency_key_for, plan_corrections, push_channel
from simulator.faults import FaultPlan

from .conftest import (
    TOKEN,
    applied_for_key,
    applied_total,
    client,
    correction_row,
    level,
    listing,
    log_of,
    status_of,
    unique,
)

pytestmark = pytest.mark.integration


def plan_one(pusher, mart, sims, channel_client: str, name: str, index: int = 0, delta: int = 3, **kw):
    lst = listing(sims, channel_client, index)
    now = level(sims, lst)
    row = correction_row(name, lst, now, now + delta, **kw)
    plan_corrections(pusher, name, mart([row]))
    return row, lst


def test_planning_twice_plans_once_and_newer_supersedes_older(pusher, mart, sims):
    name = unique("shopify")
    a, b = listing(sims, "shopify", 0), listing(sims, "shopify", 1)
    older = correction_row(name, a, 5, 7, snapshot="2026-01-01T00:00:00Z")
    newer = correction_row(name, a, 5, 8, snapshot="2026-01-01T00:05:00Z")
    review = correction_row(name, b, 2, 40, drift_class="uom", needs_review=True)
    relation = mart([older, newer, review])
    first = plan_corrections(pusher, name, relation)
    assert (first.inserted_planned, first.inserted_review) == (1, 1)
    again = plan_corrections(pusher, name, relation)
    assert (again.inserted_planned, again.inserted_review, again.superseded) == (0, 0, 0)
    rows = dict(pusher.execute("select correction_id, status from ops.corrections where channel = %s", (name,)).fetchall())
    assert rows == {newer["correction_id"]: "planned", review["correction_id"]: "needs_review"}
    key = pusher.execute("select idempotency_key from ops.corrections where correction_id = %s",
                         (newer["correction_id"],)).fetchone()[0]
    assert key == idempotency_key_for(newer["correction_id"])

    # A newer snapshot replaces the plan: the open corrections it no longer lists go stale.
    newest = correction_row(name, a, 6, 8, snapshot="2026-01-01T00:10:00Z")
    result = plan_corrections(pusher, name, mart([newest]))
    assert (result.inserted_planned, result.superseded) == (1, 2)
    assert status_of(pusher, newer["correction_id"]) == "stale"
    assert status_of(pusher, review["correction_id"]) == "stale"
    assert status_of(pusher, newest["correction_id"]) == "planned"


@pytest.mark.parametrize("channel", ["shopify", "square", "shiphero"])
def test_push_applies_once_and_a_second_push_sends_nothing(pusher, mart, sims, channel):
    name = unique(channel)
    row, lst = plan_one(pusher, mart, sims, channel, name, index=2)
    before = applied_total(sims, channel)
    with client(sims, channel) as c:
        summary = push_channel(pusher, c, name)
        assert summary.counts == {"applied": 1}
        assert push_channel(pusher, c, name).counts == {}
    assert status_of(pusher, row["correction_id"]) == "applied"
    assert level(sims, lst) == row["to_quantity"]
    assert applied_total(sims, channel) - before == 1
    log = log_of(pusher, row["correction_id"])
    assert [o for o, _, _ in log] == ["applied"]
    assert not any(TOKEN in (d or "") for _, _, d in log)


@pytest.mark.parametrize("channel", ["shopify", "square", "shiphero"])
def test_reply_lost_after_apply_is_settled_as_applied_once(pusher, mart, sims, channel):
    """F-KILL-PUSH (b): the channel applies the write, then drops the connection unanswered."""
    name = unique(channel)
    row, lst = plan_one(pusher, mart, sims, channel, name, index=3)
    before = applied_total(sims, channel)
    sims.world.set_faults(channel, FaultPlan(apply_then_drop_rate=1.0))
    with client(sims, channel) as c:
        summary = push_channel(pusher, c, name)
    sims.world.set_faults(channel, FaultPlan())
    assert summary.counts == {"applied": 1}, summary
    assert status_of(pusher, row["correction_id"]) == "applied"
    assert level(sims, lst) == row["to_quantity"]
    assert applied_total(sims, channel) - before == 1


def test_in_flight_correction_never_sent_is_resent_with_the_same_key(pusher, mart, sims):
    """Killed after claiming, before sending: keyed channels resend with the SAME key, once."""
    name = unique("shopify")
    row, lst = plan_one(pusher, mart, sims, "shopify", name, index=4)
    assert claim(pusher, row["correction_id"]) is not None  # the killed pusher's recovery point 1
    assert status_of(pusher, row["correction_id"]) == "pushed"
    with client(sims, "shopify") as c:
        summary = push_channel(pusher, c, name)
    assert summary.settled_in_flight == 1 and summary.counts == {"applied": 1}
    key = idempotency_key_for(row["correction_id"])
    assert applied_for_key(sims, "shopify", key)["applied"] == 1
    assert level(sims, lst) == row["to_quantity"]


def test_in_flight_correction_on_a_channel_without_keys_is_failed_not_resent(pusher, mart, sims):
    name = unique("shiphero")
    row, lst = plan_one(pusher, mart, sims, "shiphero", name, index=1)
    before = applied_total(sims, "shiphero")
    claim(pusher, row["correction_id"])
    with client(sims, "shiphero") as c:
        summary = push_channel(pusher, c, name)
    assert summary.counts == {"failed": 1}
    assert applied_total(sims, "shiphero") == before
    assert level(sims, lst) == row["from_quantity"]

    # The next plan still lists it (the drift is still there): re-opened and pushed once, never doubled.
    plan = plan_corrections(pusher, name, mart([row]))
    assert plan.replanned == 1 and status_of(pusher, row["correction_id"]) == "planned"
    with client(sims, "shiphero") as c:
        assert push_channel(pusher, c, name).counts == {"applied": 1}
    assert applied_total(sims, "shiphero") == before + 1
    assert level(sims, lst) == row["to_quantity"]
    assert plan_corrections(pusher, name, mart([row])).replanned == 0  # applied stays applied


def test_a_correction_that_keeps_failing_is_re_planned_a_few_times_only(pusher, mart, sims):
    from orchestration.lib.push import MAX_ATTEMPTS

    name = unique("shiphero")
    row, _ = plan_one(pusher, mart, sims, "shiphero", name, index=2)
    for attempt in range(1, MAX_ATTEMPTS + 2):
        claim(pusher, row["correction_id"])  # a pusher killed before sending, every time
        with client(sims, "shiphero") as c:
            assert push_channel(pusher, c, name).counts == {"failed": 1}
        replanned = plan_corrections(pusher, name, mart([row])).replanned
        assert replanned == (1 if attempt < MAX_ATTEMPTS else 0), attempt
        if not replanned:
            break
    assert status_of(pusher, row["correction_id"]) == "failed"


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from orchestration.lib.channels import CLIENTS, RetryPolicy
    from orchestration.lib.push import push_channel
    from orchestration.lib.warehouse import Warehouse
    from orchestration.settings import Settings

    home, channel_client, name, url, token = sys.argv[1:6]
    wh = Warehouse(Settings(home=Path(home)))
    conn = wh.connect("pusher")
    client = CLIENTS[channel_client](url, token, retry=RetryPolicy(max_attempts=2, backoff_base=0.01))
    # SIGKILL right after the channel answered, before the outcome is committed.
    push_channel(conn, client, name, on_sent=lambda row: os.kill(os.getpid(), signal.SIGKILL))
""")


@pytest.mark.parametrize("channel", ["shopify", "square", "shiphero"])
def test_pusher_killed_after_send_then_resumed_applies_once(pusher, mart, sims, session_settings, channel):
    """F-KILL-PUSH (a): a real process SIGKILLed between the channel's answer and the DB commit."""
    name = unique(channel)
    row, lst = plan_one(pusher, mart, sims, channel, name, index=5)
    before = applied_total(sims, channel)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(session_settings.home), channel, name,
                           sims.base_urls[channel], TOKEN], capture_output=True, text=True, timeout=60,
                          env={**os.environ})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert status_of(pusher, row["correction_id"]) == "pushed"
    assert log_of(pusher, row["correction_id"]) == []
    assert level(sims, lst) == row["to_quantity"]
    with client(sims, channel) as c:
        summary = push_channel(pusher, c, name)
        assert summary.settled_in_flight == 1 and summary.counts == {"applied": 1}
        assert push_channel(pusher, c, name).counts == {}
    assert status_of(pusher, row["correction_id"]) == "applied"
    assert applied_total(sims, channel) - before == 1
    assert [o for o, _, _ in log_of(pusher, row["correction_id"])] == ["applied"]


@pytest.mark.parametrize("channel", ["shopify", "square", "shiphero"])
def test_concurrent_change_gives_stale_and_a_replan_never_an_overwrite(pusher, mart, sims, channel):
    """F-CAS: the level changes between planning and pushing."""
    name = unique(channel)
    lst = listing(sims, channel, 6)
    now = level(sims, lst)
    first = correction_row(name, lst, now, now + 5, snapshot="2026-01-02T00:00:00Z")
    plan_corrections(pusher, name, mart([first]))
    sims.world.hand_edit(channel, lst.channel_sku, lst.channel_location, int(now) + 2)
    with client(sims, channel) as c:
        assert push_channel(pusher, c, name).counts == {"stale": 1}
        assert status_of(pusher, first["correction_id"]) == "stale"
        assert level(sims, lst) == now + 2  # not overwritten
        assert [o for o, _, _ in log_of(pusher, first["correction_id"])] == ["stale"]
        # The next cycle re-reads the channel and plans a fresh correction from the new level.
        second = correction_row(name, lst, now + 2, now + 5, snapshot="2026-01-02T00:05:00Z")
        plan_corrections(pusher, name, mart([second]))
        assert status_of(pusher, first["correction_id"]) == "stale"
        assert push_channel(pusher, c, name).counts == {"applied": 1}
    assert level(sims, lst) == now + 5


def test_needs_review_is_not_pushed_until_approved(pusher, mart, sims):
    from orchestration.lib.review import ReviewError, decide, list_queue

    name = unique("shopify")
    row, lst = plan_one(pusher, mart, sims, "shopify", name, index=7, needs_review=True, drift_class="uom")
    with client(sims, "shopify") as c:
        assert push_channel(pusher, c, name).counts == {}
        assert row["correction_id"] in {r["correction_id"] for r in list_queue(pusher, name)}
        with pytest.raises(ReviewError, match="no correction"):
            decide(pusher, "nope", "approved", "ana")
        with pytest.raises(ReviewError, match="needs a reason"):
            decide(pusher, row["correction_id"], "rejected", "ana", "")
        decide(pusher, row["correction_id"], "approved", "ana", "checked the shelf")
        with pytest.raises(ReviewError, match="is approved, not needs_review"):
            decide(pusher, row["correction_id"], "rejected", "bo", "changed my mind")
        assert push_channel(pusher, c, name).counts == {"applied": 1}
    decisions = pusher.execute("select decision, decided_by, reason from ops.review_decisions where correction_id = %s",
                               (row["correction_id"],)).fetchall()
    assert decisions == [("approved", "ana", "checked the shelf")]
    assert level(sims, lst) == row["to_quantity"]


def test_rejected_correction_is_never_pushed(pusher, mart, sims):
    from orchestration.lib.review import decide

    name = unique("square")
    row, lst = plan_one(pusher, mart, sims, "square", name, index=0, conflict_rule="manual")
    assert status_of(pusher, row["correction_id"]) == "needs_review"
    decide(pusher, row["correction_id"], "rejected", "ana", "a cycle count is under way")
    with client(sims, "square") as c:
        assert push_channel(pusher, c, name).counts == {}
    assert status_of(pusher, row["correction_id"]) == "rejected"
    assert level(sims, lst) == Decimal(row["from_quantity"])


def test_amazon_accepted_patch_stays_in_flight_until_read_back(pusher, mart, sims):
    """Amazon only queues a patch (ACCEPTED): the pusher does not wait for it, nothing is sent twice, and
    a later push run settles it by reading the offer back once `settle_after` has passed."""
    name = unique("amazon")
    mfn = [x for x in sims.world.catalog.listings_for("amazon") if x.channel_location == "DEFAULT"]
    lst = mfn[0]
    now = level(sims, lst)
    row = correction_row(name, lst, now, now + 2)
    plan_corrections(pusher, name, mart([row]))
    before = applied_total(sims, "amazon")
    with client(sims, "amazon", settle_after=3600) as c:
        first = push_channel(pusher, c, name)
        assert (first.counts, first.unresolved) == ({}, 1)
        again = push_channel(pusher, c, name)  # too early to settle: nothing read back, nothing resent
        assert (again.counts, again.settled_in_flight, again.unresolved) == ({}, 0, 1)
    assert status_of(pusher, row["correction_id"]) == "pushed"
    assert applied_total(sims, "amazon") - before == 1
    time.sleep(0.2)  # the simulator applies an ACCEPTED patch 0.05 s later
    with client(sims, "amazon", settle_after=0) as c:
        settled = push_channel(pusher, c, name)
    assert settled.settled_in_flight == 1 and settled.counts == {"applied": 1}
    assert status_of(pusher, row["correction_id"]) == "applied"
    assert applied_total(sims, "amazon") - before == 1
    assert [o for o, _, _ in log_of(pusher, row["correction_id"])] == ["unknown", "applied"]
