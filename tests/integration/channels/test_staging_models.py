"""The channel staging models on real Postgres and real dbt, fed by the real clients from the simulator:
levels equal each channel's own figures, and folding each change feed reproduces the channel's level
(so the movement types and signs are right)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

import pytest

from orchestration.lib import raw
from orchestration.lib.channels import (
    CLIENTS,
    AmazonClient,
    ShipHeroClient,
    ShopifyClient,
    SquareClient,
    ToastClient,
)
from simulator.scenario import AMAZON_MFN_CHANNEL, AMAZON_SELLER_ID, Scenario
from simulator.server import start_simulators
from simulator.world import World

pytestmark = pytest.mark.integration  # needs the session's embedded PostgreSQL and runs dbt

MOVEMENT_TYPES = {"receipt", "sale", "customer_return", "vendor_return", "transfer_out", "transfer_in",
                  "adjustment", "damage", "physical_count"}


@pytest.fixture(scope="module")
def staged(warehouse, dbt):
    world = World(Scenario(seed=11, skus=15, days=2))
    cat = world.catalog
    with start_simulators(world) as sims:
        url = sims.base_urls
        mfn = [lst.channel_sku for lst in cat.listings_for("amazon") if lst.channel_location == AMAZON_MFN_CHANNEL]
        clients = {
            "shopify": ShopifyClient(url["shopify"], "sim-shopify-token"),
            "square": SquareClient(url["square"], "sim-square-token"),
            "amazon": AmazonClient(url["amazon"], "sim-amazon-token", seller_id=AMAZON_SELLER_ID, mfn_skus=mfn),
            "shiphero": ShipHeroClient(url["shiphero"], "sim-shiphero-token"),
            "toast": ToastClient(url["toast"], "sim-toast-token", restaurants={
                cat.toast_restaurant: [lst.channel_sku for lst in cat.listings_for("toast")]}),
        }
        truth = {name: sims.app(name).truth()["levels"] for name in CLIENTS}
        tables = [(name, entity, entity.table(name)) for name in CLIENTS for entity in CLIENTS[name].entities]
        # The loader owns the raw tables (so the transformer may read them); the rows go in through
        # an admin session because load_api_records stages them in a temporary table.
        with warehouse.connect("loader") as conn, conn.transaction():
            for _, _, table in tables:
                conn.execute(raw.api_table_ddl(table))
        with warehouse.admin_connect() as conn:
            for name, entity, table in tables:
                with conn.transaction():
                    conn.execute(f"truncate raw.{table}")  # noqa: S608 - fixed table names from the registry
                    records = getattr(clients[name], entity.reader)(None)
                    raw.load_api_records(conn, table, records, uuid.uuid4().hex)
    dbt("build", "--select", *(f"path:models/staging/{name}" for name in CLIENTS))
    return truth


def rows(warehouse, query):
    with warehouse.admin_connect() as conn:
        return conn.execute(query).fetchall()


@pytest.mark.parametrize("model,channel,column", [
    ("stg_shopify__inventory_levels", "shopify", "available_quantity"),
    ("stg_square__inventory_counts", "square", "on_hand_quantity"),
    ("stg_shiphero__warehouse_products", "shiphero", "on_hand_quantity"),
    ("stg_toast__stock_items", "toast", "coalesce(on_hand_quantity, 0)"),
])
def test_levels_equal_the_channel_figures(warehouse, staged, model, channel, column):
    got = {(sku, loc): qty for sku, loc, qty in rows(
        warehouse, f"select channel_sku, channel_location, {column} from staging.{model}")}  # noqa: S608
    expected = {(r["channel_sku"], r["channel_location"]): Decimal(r["channel_quantity"]) for r in staged[channel]}
    assert got == expected


def test_amazon_levels_cover_fba_and_merchant_offers(warehouse, staged):
    fba = rows(warehouse, "select channel_sku, channel_location, available_quantity from "
                          "staging.stg_amazon__inventory_summaries")
    mfn = rows(warehouse, "select channel_sku, channel_location, available_quantity from "
                          "staging.stg_amazon__listings_items")
    expected = {(r["channel_sku"], r["channel_location"]): Decimal(r["channel_quantity"]) for r in staged["amazon"]}
    assert {(s, loc): q for s, loc, q in fba + mfn} == expected


def test_toast_in_stock_is_flagged_not_counted(warehouse, staged):
    for status_untracked, qty in rows(warehouse, "select is_untracked_in_stock, on_hand_quantity "
                                                 "from staging.stg_toast__stock_items"):
        assert (qty is None) == status_untracked


@pytest.mark.parametrize("model,channel", [("stg_square__inventory_changes", "square"),
                                           ("stg_shiphero__inventory_changes", "shiphero")])
def test_folding_the_movements_reproduces_the_channel_level(warehouse, staged, model, channel):
    movements = rows(warehouse, f"select channel_sku, channel_location, movement_type, quantity "  # noqa: S608
                                f"from staging.{model} order by occurred_at, loaded_at, event_id")
    assert movements and {m[2] for m in movements} <= MOVEMENT_TYPES
    assert "sale" in {m[2] for m in movements}
    level: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for sku, loc, kind, qty in movements:
        level[(sku, loc)] = qty if kind == "physical_count" else level[(sku, loc)] + qty
    expected = {(r["channel_sku"], r["channel_location"]): Decimal(r["channel_quantity"]) for r in staged[channel]}
    assert {k: level.get(k, Decimal(0)) for k in expected} == expected


def test_shiphero_receipts_name_the_purchase_order(warehouse, staged):
    references = rows(warehouse, "select reference from staging.stg_shiphero__inventory_changes "
                                 "where movement_type = 'receipt'")
    assert references and all(ref.startswith("PO-") for (ref,) in references)
