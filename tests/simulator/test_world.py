"""The generated retailer: determinism, ground truth, references between events, files."""

from __future__ import annotations

import csv
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from simulator import World
from simulator.files import CANONICAL_COLUMNS


def fold(movements) -> dict[tuple[str, str], int]:
    """On-hand as the ledger fold: counts set the level, everything else adds (base units)."""
    on_hand: dict[tuple[str, str], int] = defaultdict(int)
    for m in movements:  # generation order = physical order (late events are only reported late)
        if m.movement_type == "physical_count":
            on_hand[(m.sku, m.location)] = m.quantity_base
        else:
            on_hand[(m.sku, m.location)] += m.quantity_base
    return dict(on_hand)


def test_same_seed_same_world_and_different_seed_differs():
    a, b, c = World(skus=15, seed=1, days=3), World(skus=15, seed=1, days=3), World(skus=15, seed=2, days=3)
    rows = lambda w: [m.row() for m in w.movements]  # noqa: E731
    assert rows(a) == rows(b)
    assert rows(a) != rows(c)
    assert a.catalog.listings == b.catalog.listings
    a.tick(20), b.tick(20)
    assert rows(a) == rows(b)


def test_truth_is_the_fold_of_the_log_and_never_negative(world):
    world.tick(200)
    assert {k: v for k, v in fold(world.movements).items()} == world.truth()
    assert min(world.truth().values()) >= 0


def test_masters_equal_truth_without_faults(world):
    world.tick(100)
    truth = world.truth()
    masters = {loc.location: loc.master_channel for loc in world.catalog.locations}
    checked = 0
    for lst in world.catalog.listings:
        if masters[lst.location] == lst.channel and lst.channel in ("square", "shiphero", "toast", "amazon"):
            assert world.channel_level(lst) == truth.get((lst.sku, lst.location), 0), lst
            checked += 1
    assert checked > 50


def test_every_movement_type_and_reference_rules():
    w = World(skus=60, seed=5, days=7)
    w.tick(300)
    types = Counter(m.movement_type for m in w.movements)
    assert set(types) == {
        "receipt",
        "sale",
        "customer_return",
        "vendor_return",
        "transfer_out",
        "transfer_in",
        "adjustment",
        "damage",
        "physical_count",
    }
    by_id = {m.event_id: m for m in w.movements}
    assert len(by_id) == len(w.movements), "event ids are unique"
    for m in w.movements:
        assert m.occurred_at.tzinfo is not None
        if m.movement_type == "customer_return":
            assert by_id[m.reference].movement_type == "sale" and by_id[m.reference].sku == m.sku
        if m.movement_type == "vendor_return":
            assert by_id[m.reference].movement_type == "receipt" and by_id[m.reference].location == m.location
        if m.movement_type == "receipt":
            assert m.unit_cost is not None and m.unit_cost > 0 and m.reference.startswith("PO-")
    outs = {m.reference: m for m in w.movements if m.movement_type == "transfer_out"}
    ins = [m for m in w.movements if m.movement_type == "transfer_in"]
    for m in ins:
        assert outs[m.reference].quantity == -m.quantity and outs[m.reference].sku == m.sku
        assert outs[m.reference].occurred_at < m.occurred_at
    assert len(outs) == len(ins) + len(w.in_transit)
    # Partial receipts: some purchase orders arrive in more than one receipt.
    per_po = Counter(m.reference for m in w.erp if m.movement_type == "receipt")
    assert max(per_po.values()) >= 2
    # Receipts in case packs carry the cost per case.
    assert any(m.uom != "EA" for m in w.erp)


def test_online_sales_reach_the_warehouse_later(world):
    """An online order moves Shopify's figures at once and the warehouse's only when it ships."""
    world.tick(150)
    order = next(o for o in world.pending_orders if o.channel == "shopify")
    key = (order.listing.channel_sku, order.listing.channel_location)
    committed = world.shopify_levels[key]["committed"]
    assert committed >= order.quantity
    assert not [m for m in world.movements if m.reference == order.order_id]
    world.tick(0, seconds=9 * 3600)  # longer than the longest shipping lag
    shipped = [m for m in world.movements if m.reference == order.order_id]
    assert [(m.movement_type, m.location, m.quantity) for m in shipped] == [
        ("sale", order.location, -order.quantity)
    ]
    assert world.shopify_levels[key]["committed"] <= committed - order.quantity


def test_write_files_headers_and_erp_content(world, tmp_path):
    paths = world.write_files(tmp_path)
    headers = {name: next(csv.reader(p.open())) for name, p in paths.items()}
    assert headers["skus"] == ["sku", "base_uom", "description"]
    assert headers["uom_conversions"] == ["sku", "uom", "factor_to_base"]
    assert headers["locations"] == ["location", "kind", "master_channel"]
    assert headers["listings"] == ["channel", "channel_sku", "channel_location", "sku", "location"]
    assert headers["policies"] == [
        "channel",
        "safety_buffer",
        "percentage",
        "maximum",
        "minimum",
        "conflict_rule",
        "in_flight_seconds",
    ]
    assert headers["kit_components"] == ["kit_sku", "component_sku", "quantity_per_kit"]
    assert headers["movements"] == list(CANONICAL_COLUMNS)
    rows = list(csv.DictReader(paths["movements"].open()))
    assert rows == [m.row() for m in world.erp]
    assert {r["movement_type"] for r in rows} <= {"receipt", "vendor_return"}
    for r in rows:
        datetime.fromisoformat(r["occurred_at"].replace("Z", "+00:00"))
        assert Decimal(r["unit_cost"]) > 0 and r["currency"] == "USD"
    locations = list(csv.DictReader(paths["locations"].open()))
    assert {(x["location"], x["master_channel"]) for x in locations} >= {
        ("WH-EAST", "shiphero"),
        ("WH-WEST", "shiphero"),
        ("STORE-01", "square"),
        ("STORE-02", "square"),
        ("STORE-03", "toast"),
        ("FBA-US", "amazon"),
    }
    conversions = list(csv.DictReader(paths["uom_conversions"].open()))
    assert {c["uom"] for c in conversions} <= {"CS6", "CS12", "CS24"}
    assert all(int(c["factor_to_base"]) == int(c["uom"][2:]) for c in conversions)


def test_pos_exports_map_back_to_the_truth(world, tmp_path):
    """Applying `file_source_mappings()` to each export reproduces the truth log of that store."""
    world.tick(200)
    paths = world.write_files(tmp_path)
    for source, mapping in world.file_source_mappings().items():
        rows = list(csv.DictReader(paths[source].open()))
        assert rows, source
        canonical = []
        for raw in rows:
            row = {canon: raw[col] for col, canon in mapping["columns"].items()}
            for canon, values in mapping["values"].items():
                row[canon] = values[row[canon]]
            ts = datetime.strptime(row["occurred_at"], mapping["timestamp_format"]).replace(tzinfo=UTC)
            qty = int(row["quantity"])
            if row["movement_type"] in mapping["negate_movement_types"]:
                qty = -qty
            canonical.append(
                (row["event_id"], ts, row["sku"], row["location"], row["movement_type"], qty, row["uom"])
            )
        expected = [
            (
                m.event_id,
                m.occurred_at.replace(microsecond=0),
                m.sku,
                m.location,
                m.movement_type,
                m.quantity,
                m.uom,
            )
            for m in world.movements
            if m.source == source
        ]
        assert canonical == expected


def _quiet_world():
    """A world whose publishing channels show exactly what policy says (no open orders left)."""
    world = World(skus=20, seed=3, days=1)
    world.ship_open_orders()
    world._sync_published()
    return world


def test_convergence_probe_times_a_change_until_every_channel_shows_it():
    from simulator.world import ConvergenceProbe

    world = _quiet_world()
    lst = next(x for x in world.catalog.listings_for("shopify")
               if not world.catalog.sku(x.sku).is_kit and (x.sku, x.location) in world._published_by_key)
    key = (lst.sku, lst.location)
    assert world.published_in_sync(key)
    probe = ConvergenceProbe(world, interval=3600)  # sampled by hand below
    probe.start()
    try:
        with world.lock:
            world._log("receipt", lst.sku, lst.location, 40, unit_cost=Decimal("1"), reference="PO-T")
        assert not world.published_in_sync(key)
        probe.sample()
        assert (probe.latencies, probe.pending_count()) == ([], 1)  # the channel still shows the old level
        with world.lock:
            world._sync_published()  # a sync publishes it
        probe.sample()
        assert probe.pending_count() == 0 and len(probe.latencies) == 1 and probe.latencies[0] >= 0
        (happened, latency), = probe.samples  # when it happened, for figures split by time (the demo's steady state)
        assert latency == probe.latencies[0] and happened <= time.monotonic() - latency
        split = time.monotonic()
        with world.lock:
            world._log("receipt", lst.sku, lst.location, 5, unit_cost=Decimal("1"), reference="PO-U")
        assert (probe.pending_count(), probe.pending_count(since=split), probe.pending_count(since=time.monotonic())) == (1, 1, 0)
    finally:
        probe.stop()
    assert probe._observe not in world.observers


def test_a_channel_sale_the_free_stock_cannot_cover_is_an_oversell():
    world = _quiet_world()
    lst = next(x for x in world.catalog.listings_for("shopify") if not world.catalog.sku(x.sku).is_kit)
    level = world.shopify_levels[(lst.channel_sku, lst.channel_location)]
    with world.lock:
        world.on_hand[(lst.sku, lst.location)] = 500
        level["available"] = 10
        world._ev_shopify_sale(lst)
        assert world.oversells.get("shopify", 0) == 0  # plenty of stock
        world.on_hand[(lst.sku, lst.location)] = 1  # the channel still publishes 8 or 9
        world._ev_shopify_sale(lst)
        world._ev_shopify_sale(lst)
    assert world.oversells["shopify"] >= 1
    assert world.free_stock(lst.sku, lst.location) < 0
