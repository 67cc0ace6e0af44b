"""The ShipHero client's first level read through the inventory snapshot, against the simulator over
HTTP: far fewer credits than paging, the same levels, a fallback to paging when the job fails or is
late, a clear error for an expired or missing file, and `updated_from` pages once there is a cursor."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import httpx
import pytest

from orchestration.lib.channels import LevelTarget, RetryPolicy, ShipHeroClient
from orchestration.lib.channels.shiphero import SnapshotError
from simulator.channels.shiphero import SNAPSHOT_GENERATE_COMPLEXITY
from simulator.faults import FaultPlan
from simulator.scenario import Scenario
from simulator.server import start_simulators
from simulator.world import World

TOKEN = "canary-sim-tok-5c2e9a10"
FAST = RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_cap=0.05, budget_seconds=30)
# A roomy bucket: several paged reads share the module's simulator; the credits are counted either way.
BUCKET = {"credits": 1e6, "restore_rate": 1e5}
LEVEL_FIELDS = ("on_hand", "available", "allocated", "backorder", "reserve_inventory", "non_sellable_quantity")


@pytest.fixture(scope="module")
def sims():
    world = World(Scenario(seed=4, skus=600, days=2))
    with start_simulators(world, options={"shiphero": {"token": TOKEN, "snapshot_delay": 0.2, **BUCKET}}) as running:
        yield running


@pytest.fixture(autouse=True)
def reset(sims):
    app = sims.app("shiphero")
    sims.world.set_faults("shiphero", FaultPlan())
    app.snapshot_outcome, app.snapshot_delay = "success", 0.2
    yield


def client(sims, **kw):
    warehouses = sorted(sims.world.catalog.shiphero_warehouses.values())
    return ShipHeroClient(sims.base_urls["shiphero"], TOKEN, warehouse_ids=warehouses, retry=FAST,
                          snapshot_poll=0.1, **BUCKET, **kw)


def levels(records):
    return {(r.payload["sku"], r.payload["warehouse_id"]): tuple(r.payload[f] for f in LEVEL_FIELDS)
            for r in records}


def spent(sims, read):
    app = sims.app("shiphero")
    before = app.credits_spent
    records = list(read())
    return records, app.credits_spent - before


def test_first_read_uses_the_snapshot_spends_far_fewer_credits_and_shows_the_same_levels(sims):
    # A unit-confusion view on a few SKUs: the snapshot must report what warehouse_products reports.
    packed = [s.sku for s in sims.world.catalog.skus if s.packs][:3]
    sims.world.set_faults("shiphero", FaultPlan(uom_skus=packed))
    snap, snap_credits = spent(sims, lambda: client(sims).read_levels())
    paged, paged_credits = spent(sims, lambda: client(sims, snapshot_levels=False).read_levels())
    assert len(snap) == len(paged) == len(sims.world.catalog.listings_for("shiphero")) > 1000
    assert levels(snap) == levels(paged)  # nothing moved between the two reads
    assert all(r.source_id.endswith("|snapshot:" + r.payload["snapshot_id"]) for r in snap)
    assert not {r.source_id for r in snap} & {r.source_id for r in paged}
    assert {r.cursor_at for r in snap} == {sims.world.now}  # the snapshot's as-of time
    warehouses = len(sims.world.catalog.shiphero_warehouses)
    assert snap_credits < warehouses * SNAPSHOT_GENERATE_COMPLEXITY + 20  # the jobs plus a few polls
    assert paged_credits > 10 * snap_credits, (snap_credits, paged_credits)


def test_a_failed_job_falls_back_to_paging_and_says_why(sims, caplog):
    sims.app("shiphero").snapshot_outcome = "error"
    with caplog.at_level(logging.WARNING):
        records = list(client(sims).read_levels())
    assert levels(records) == levels(client(sims, snapshot_levels=False).read_levels())
    assert not any("|snapshot:" in r.source_id for r in records)
    assert "ended error" in caplog.text and "page by page" in caplog.text


def test_a_job_past_the_timeout_is_aborted_and_paging_takes_over(sims, caplog):
    app = sims.app("shiphero")
    app.snapshot_outcome = "stall"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        records = list(client(sims, snapshot_timeout=0.5).read_levels())
    assert time.monotonic() - started < 10
    assert "snapshot_timeout" in caplog.text and not any("|snapshot:" in r.source_id for r in records)
    assert len(records) == len(sims.world.catalog.listings_for("shiphero"))
    stalled = [j for j in app.snapshots.values() if j["_outcome"] == "stall"]
    assert stalled and all(j["status"] == "aborted" for j in stalled)


def test_an_expired_or_missing_snapshot_url_is_a_clear_error(sims):
    app = sims.app("shiphero")
    sh = client(sims)
    sh.read_snapshot_levels()
    job = max(app.snapshots.values(), key=lambda j: j["updated_at"])
    url = job["snapshot_url"]
    assert httpx.get(url).status_code == 200
    missing = url.replace("/snapshots/", "/snapshots/0")
    with pytest.raises(SnapshotError, match="does not exist"):
        sh.download_snapshot(missing, "0" + job["snapshot_id"])
    sims.world.tick(0, seconds=timedelta(hours=24, minutes=1).total_seconds())
    with pytest.raises(SnapshotError, match=r"has expired .*24 h.*HTTP 403"):
        sh.download_snapshot(url, job["snapshot_id"])


def test_a_later_read_pages_with_updated_from(sims):
    first = client(sims).read_snapshot_levels()
    since = max(r.cursor_at for r in first)
    sims.world.tick(0, seconds=60)
    sh = client(sims)
    target = LevelTarget(first[0].payload["sku"], first[0].payload["warehouse_id"])
    level = sh.read_level(target)
    assert sh.set_level(target, level, level + 6, "snapshot-later-1").outcome == "applied"
    app = sims.app("shiphero")
    jobs = len(app.snapshots)
    later = list(sh.read_levels(since))
    assert len(app.snapshots) == jobs  # no snapshot: a cursor means an incremental, paged read
    assert [(r.payload["sku"], r.payload["warehouse_id"], r.payload["on_hand"]) for r in later] == [
        (target.channel_sku, target.channel_location, level + 6)]
    assert later[0].cursor_at > since and "|snapshot:" not in later[0].source_id
