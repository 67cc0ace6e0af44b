"""Fixtures of the sync tests: the sync tables, running simulators, a per-test correction mart,
clients against the simulators, and a counter of the mutations each simulator applied."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from psycopg import sql

from orchestration.lib.channels import (
    AmazonClient,
    LevelTarget,
    RetryPolicy,
    ShipHeroClient,
    ShopifyClient,
    SquareClient,
)
from simulator.faults import FaultPlan
from simulator.scenario import AMAZON_MARKETPLACE, AMAZON_SELLER_ID, Scenario
from simulator.server import start_simulators
from simulator.world import World

TOKEN = "canary-sync-tok-9f2c41"
FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05, budget_seconds=10)
CLIENTS = {"shopify": ShopifyClient, "square": SquareClient, "shiphero": ShipHeroClient, "amazon": AmazonClient}
CLIENT_OPTIONS = {"amazon": {"seller_id": AMAZON_SELLER_ID, "marketplace_id": AMAZON_MARKETPLACE}}


@pytest.fixture(scope="session")
def sync_warehouse(warehouse):
    warehouse.bootstrap()  # idempotent: running it again must not disturb the ops tables
    return warehouse


@pytest.fixture(scope="session")
def sims():
    world = World(Scenario(seed=11, skus=10, days=1))
    options = {name: {"token": TOKEN} for name in CLIENTS}
    options["amazon"]["apply_delay"] = 0.05
    with start_simulators(world, options=options) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults(request):
    yield
    if "sims" in request.fixturenames:
        running = request.getfixturevalue("sims")
        for name in CLIENTS:
            running.world.set_faults(name, FaultPlan())


def client(sims, channel: str, **kw):
    return CLIENTS[channel](sims.base_urls[channel], TOKEN, retry=FAST, **{**CLIENT_OPTIONS.get(channel, {}), **kw})


def listing(sims, channel: str, index: int = 0):
    return sims.world.catalog.listings_for(channel)[index]


def level(sims, lst) -> Decimal:
    with client(sims, lst.channel) as c:
        value = c.read_level(LevelTarget(lst.channel_sku, lst.channel_location))
    return value if value is not None else Decimal(0)


def applied_total(sims, channel: str) -> int:
    return sum(e["applied"] for e in httpx.get(f"{sims.base_urls[channel]}/__applied").json().values())


def applied_for_key(sims, channel: str, key: str) -> dict:
    return httpx.get(f"{sims.base_urls[channel]}/__applied").json().get(key, {"applied": 0, "requests": 0})


def correction_row(name: str, lst, from_q, to_q, *, snapshot="2026-01-01T00:00:00Z", needs_review=False,
                   drift_class="missed_event", conflict_rule="master_wins", cid=None) -> dict:
    return {"correction_id": cid or f"{name}:{lst.sku}:{lst.location}:{snapshot}", "channel": name,
            "sku": lst.sku, "location": lst.location, "channel_sku": lst.channel_sku,
            "channel_location": lst.channel_location, "from_quantity": Decimal(from_q),
            "to_quantity": Decimal(to_q), "drift_quantity": Decimal(from_q) - Decimal(to_q),
            "drift_class": drift_class, "snapshot_at": snapshot, "conflict_rule": conflict_rule,
            "needs_review": needs_review}


MART_COLUMNS = ("correction_id text, channel text, sku text, location text, channel_sku text, channel_location text, "
                "from_quantity numeric, to_quantity numeric, drift_quantity numeric, drift_class text, "
                "snapshot_at timestamptz, conflict_rule text, needs_review boolean")


@pytest.fixture
def mart(sync_warehouse):
    """`write(rows)` (re)fills a per-test stand-in for marts.sync_<channel>__stock_corrections, built
    by the transformer the way dbt would; returns the relation."""
    name = f"t_sync_{uuid.uuid4().hex[:10]}__stock_corrections"
    relation = sql.SQL("{}.{}").format(sql.Identifier("marts"), sql.Identifier(name))

    def write(rows: list[dict]):
        with sync_warehouse.connect("transformer") as conn, conn.transaction():
            conn.execute(sql.SQL("create table if not exists {} (" + MART_COLUMNS + ")").format(relation))
            conn.execute(sql.SQL("truncate {}").format(relation))
            for r in rows:
                conn.execute(sql.SQL("insert into {} values (%(correction_id)s, %(channel)s, %(sku)s, %(location)s, "
                                     "%(channel_sku)s, %(channel_location)s, %(from_quantity)s, %(to_quantity)s, "
                                     "%(drift_quantity)s, %(drift_class)s, %(snapshot_at)s, %(conflict_rule)s, "
                                     "%(needs_review)s)").format(relation), r)
        return relation

    yield write
    with sync_warehouse.connect("transformer") as conn:
        conn.execute(sql.SQL("drop table if exists {}").format(relation))
        conn.commit()


@pytest.fixture
def pusher(sync_warehouse):
    with sync_warehouse.connect("pusher") as conn:
        conn.autocommit = True
        yield conn


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def status_of(conn, correction_id: str) -> str:
    return conn.execute("select status from ops.corrections where correction_id = %s", (correction_id,)).fetchone()[0]


def log_of(conn, correction_id: str) -> list[tuple]:
    return conn.execute("select outcome, http_status, detail from ops.sync_log where correction_id = %s "
                        "order by sync_log_id", (correction_id,)).fetchall()
