"""The file channel imports every export layout the simulated retailer hands over (channels are data):
reference data, the ERP ledger, and the POS exports of systems without a stock API."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from orchestration.lib.importer import import_file
from orchestration.lib.registry import load_registry
from simulator import World

REFERENCE = ("skus", "uom_conversions", "locations", "listings", "policies", "kit_components")


@pytest.fixture(scope="module")
def world_files(tmp_path_factory):
    world = World(skus=12, seed=11, days=3)
    return world, world.write_files(tmp_path_factory.mktemp("retailer"))


def test_reference_data_and_erp_ledger_import_cleanly(warehouse, world_files):
    world, files = world_files
    for kind in REFERENCE:
        report = import_file(warehouse, kind, files[kind])
        assert report.quarantined == 0, (kind, report.reasons)
    report = import_file(warehouse, "movements", files["movements"], source="erp")
    assert report.quarantined == 0, report.reasons
    assert report.loaded == len(world.erp)


@pytest.mark.parametrize("source", ["touchbistro", "sumup"])
def test_pos_export_layouts_map_onto_the_canonical_format(warehouse, world_files, source):
    world, files = world_files
    path = files[source]
    report = import_file(warehouse, "movements", path, source=source)
    assert report.quarantined == 0, report.reasons
    expected = world.pos_exports[source]
    assert report.loaded == len(expected)
    with warehouse.admin_connect() as conn:
        rows = conn.execute(
            "select event_id, movement_type, quantity, uom from raw.file_movements where source = %s", (source,)
        ).fetchall()
    got = {r[0]: (r[1], r[2], r[3]) for r in rows}
    for m in expected:
        assert got[m.event_id] == (m.movement_type, Decimal(m.quantity), m.uom), m
    assert Counter(v[0] for v in got.values()) == Counter(m.movement_type for m in expected)


def test_registry_layouts_are_the_ones_the_cli_offers():
    assert set(load_registry().file_layouts) == {"touchbistro", "sumup"}


def test_policies_in_flight_seconds_load_and_older_warehouses_gain_the_column(warehouse, world_files):
    from orchestration.lib import raw

    world, files = world_files
    import_file(warehouse, "policies", files["policies"])
    with warehouse.admin_connect() as conn:
        loaded = dict(conn.execute("select channel, in_flight_seconds from raw.file_policies").fetchall())
    assert loaded == {p.channel: None if p.in_flight_seconds is None else Decimal(p.in_flight_seconds)
                      for p in world.catalog.policies}
    assert loaded["amazon"] == Decimal(30)
    # A warehouse made before the column existed: ensure_file_tables adds it, keeping the rows. (In one
    # transaction, rolled back: dropping the column also drops the staging view built on it.)
    with warehouse.admin_connect() as conn, conn.transaction(force_rollback=True):
        conn.execute("alter table raw.file_policies drop column in_flight_seconds cascade")
        raw.ensure_file_tables(conn)
        rows = conn.execute("select channel, in_flight_seconds from raw.file_policies").fetchall()
    assert sorted(c for c, _ in rows) == sorted(loaded) and all(v is None for _, v in rows)
    import_file(warehouse, "policies", files["policies"])
    with warehouse.admin_connect() as conn:
        assert dict(conn.execute("select channel, in_flight_seconds from raw.file_policies").fetchall()) == loaded
