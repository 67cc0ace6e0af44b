"""Run `inventory-sync demo` exactly as the command line does, and write down what the simulated world knows.

Used by `test_demo_drift.py` as a subprocess

    python -m tests.integration.demo_driver --facts FACTS.json [--missed-rate R] -- demo --skus N --cycles K

with its own `INVENTORY_SYNC_HOME`, so the demo's embedded server, Dagster instance and process
environment never mix with the test session's warehouse.

What is added to the CLI path is observation, plus one optional knob: `simulator.server.demo_faults`
(which `run_demo` imports when it runs) is wrapped so that, once the demo's fault plan is installed, the
world is kept and instrumented, and (with `--missed-rate`) the masters' missed-event rate is raised so
that a short run surely contains some. Afterwards the ground truth the platform cannot see is written as
JSON: every live physical event with its effect on the master's level and whether the master hid it from
its change feed, every hand edit, and the final Shopify levels (stored in eaches and as shown).
"""

from __future__ import annotations

import itertools
import json
import sys
from datetime import datetime


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def instrument(world) -> dict:
    """Record the world's live history from now on; returns the (growing) record."""
    record: dict = {"history_movements": len(world.movements), "master_events": [], "hand_edits": []}
    seq = itertools.count(1)  # one order over events and hand edits (the world applies them under its lock)
    original_event = world._master_event
    original_hand = world._maybe_hand_edits
    original_set = world._set_channel_level
    in_hand_edit = [False]

    def master_event(master, sku, location, mtype, before, after, reference, occurred, hidden, erp_id):
        lst = world.master_listing(master, sku, location)
        has_level = lst is not None and master not in world.pos_exports
        level_before = world.channel_level(lst) if has_level else None
        event_id = original_event(
            master, sku, location, mtype, before, after, reference, occurred, hidden, erp_id
        )
        record["master_events"].append({
            "seq": next(seq), "channel": master, "sku": sku, "location": location, "movement_type": mtype,
            "truth_before": before, "truth_after": after,
            "level_before": level_before, "level_after": world.channel_level(lst) if has_level else None,
            "occurred_at": _iso(occurred), "happened_at": _iso(world.now), "hidden": bool(hidden),
            "erp_id": erp_id, "channel_event_id": event_id,
        })
        return event_id

    def set_channel_level(lst, quantity):
        if in_hand_edit[0]:
            record["hand_edits"].append({
                "seq": next(seq), "channel": lst.channel, "sku": lst.sku, "location": lst.location,
                "channel_sku": lst.channel_sku, "channel_location": lst.channel_location,
                "level_before": world.channel_level(lst), "level_after": quantity,
                "happened_at": _iso(world.now),
            })
        return original_set(lst, quantity)

    def maybe_hand_edits():
        in_hand_edit[0] = True
        try:
            return original_hand()
        finally:
            in_hand_edit[0] = False

    # Instance attributes shadow the methods: the world calls them through `self`.
    world._master_event = master_event
    world._set_channel_level = set_channel_level
    world._maybe_hand_edits = maybe_hand_edits
    return record


def final_state(world, record: dict) -> dict:
    with world.lock:
        shopify = []
        for lst in world.catalog.listings_for("shopify"):
            stored = world.channel_level(lst)
            shopify.append({"sku": lst.sku, "location": lst.location, "stored": stored,
                            "shown": world.uom_view("shopify", lst.sku, stored)})
        return {
            **record,
            "uom_skus": list(world.faults["shopify"].uom_skus),
            "missed_rate": {ch: world.faults[ch].missed_rate for ch in world.faults},
            "live_movements": len(world.movements) - record["history_movements"],
            "now": _iso(world.now),
            "shopify": shopify,
        }


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="demo_driver")
    parser.add_argument("--facts", required=True)
    parser.add_argument("--missed-rate", type=float, default=None)
    parser.add_argument("cli_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cli_args = args.cli_args[1:] if args.cli_args[:1] == ["--"] else args.cli_args

    import simulator.server as server
    from orchestration import cli

    captured: dict = {}
    install = server.demo_faults

    def demo_faults(world) -> None:
        install(world)
        if args.missed_rate is not None:
            for plan in world.faults.values():
                if plan.missed_rate:  # the masters with a change feed (Square, ShipHero)
                    plan.missed_rate = args.missed_rate
        captured["world"], captured["record"] = world, instrument(world)

    server.demo_faults = demo_faults
    code = cli.main(cli_args)
    if "world" in captured:
        with open(args.facts, "w") as fh:
            json.dump(final_state(captured["world"], captured["record"]), fh)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
