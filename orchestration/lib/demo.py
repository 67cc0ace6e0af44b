"""`inventory-sync demo`: the whole loop on a simulated retailer, then a summary.

The demo retailer (about 2,000 SKUs, warehouses, stores, an FBA location, every channel, a week of
history) runs in the bundled simulators, which speak the channels' real APIs with a mild fault plan
always on (throttling, 5xx, duplicate and late events, a channel counting cases as eaches, hand edits,
missed events, lost replies). The demo imports the retailer's files (reference data, the ERP ledger,
the POS exports of systems without an API), points a channel registry at the simulators, then runs
sync cycles (extract → dbt build → checks → corrections pushed) while live traffic keeps flowing,
until the channels converge. Nothing here is special-cased: it is the same code a real retailer runs.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import yaml

from orchestration.lib.dbt_warm import warm_dbt
from orchestration.lib.progress import stage
from orchestration.lib.warehouse import Warehouse, open_warehouse
from orchestration.settings import Settings

REFERENCE_FILES = ("skus", "uom_conversions", "locations", "listings", "policies", "kit_components")
POS_EXPORTS = ("touchbistro", "sumup")
SETTLE_CLASSES = ("lag", "missed_event", "unexplained")


class WallClockTraffic:
    """Live traffic at `rate` events per second, with the simulated clock following the wall clock
    (so event times, snapshot times and the HTTP Date header agree, as they do in production)."""

    def __init__(self, world, rate: float):
        self.world, self.rate = world, rate
        self.events = 0
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-live-traffic", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(1.0):
            now = time.monotonic()
            elapsed, last = now - last, now
            n = 0 if self._pause.is_set() else max(1, round(self.rate * elapsed))
            self.world.tick(n, seconds=elapsed)
            self.events += n

    def pause(self) -> None:
        self._pause.set()

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def demo_registry(base_urls: dict[str, str], world) -> dict:
    """The channel registry for the simulated retailer: the same shape a real retailer writes."""
    from simulator.scenario import AMAZON_MARKETPLACE, AMAZON_MFN_CHANNEL, AMAZON_SELLER_ID

    cat = world.catalog
    toast_items = [lst.channel_sku for lst in cat.listings_for("toast")]
    mfn = [lst.channel_sku for lst in cat.listings_for("amazon") if lst.channel_location == AMAZON_MFN_CHANNEL]
    channels = {
        "shopify": {"client": "shopify", "token_env": "SHOPIFY_ACCESS_TOKEN",
                    # The demo shop is on Shopify Plus (1,000 points/s).
                    "options": {"page_size": 40, "bucket_size": 10000.0, "restore_rate": 1000.0}},
        "square": {"client": "square", "token_env": "SQUARE_ACCESS_TOKEN",
                   "options": {"location_ids": sorted(cat.square_locations.values())}},
        "amazon": {"client": "amazon", "token_env": "AMAZON_SP_ACCESS_TOKEN",
                   "options": {"seller_id": AMAZON_SELLER_ID, "marketplace_id": AMAZON_MARKETPLACE,
                               "mfn_skus": mfn, "rate_scale": 40.0,
                               # The simulator applies a patch 0.2 s after ACCEPTED (Amazon: minutes).
                               "settle_after": 5.0}},
        # ShipHero's week of history does not fit its credit bucket: the first cycle reads what the bucket and
        # max_credit_wait (10 s by default) allow, the next one the rest, while the other channels sync.
        # Changes reach its feed at most 6 hours late (the fault plan's late_max_seconds): the re-read window.
        "shiphero": {"client": "shiphero", "token_env": "SHIPHERO_ACCESS_TOKEN",
                     "options": {"warehouse_ids": sorted(cat.shiphero_warehouses.values()), "lookback": 6 * 3600}},
        "toast": {"client": "toast", "token_env": "TOAST_ACCESS_TOKEN",
                  "options": {"restaurants": {cat.toast_restaurant: toast_items}}},
    }
    for name, cfg in channels.items():
        cfg["base_url"] = base_urls[name]
    from orchestration.lib.registry import DEFAULT_REGISTRY

    layouts = yaml.safe_load(DEFAULT_REGISTRY.read_text())["file"]
    return {"channels": channels, "file": layouts}


def simulator_options(tokens: dict[str, str]) -> dict[str, dict]:
    options = {name: {"token": token} for name, token in tokens.items()}
    options["shopify"].update(bucket_size=10000.0, restore_rate=1000.0)
    options["amazon"].update(rate_scale=40.0, apply_delay=0.2)
    return options


@dataclass
class DemoState:
    cycles: int = 0
    converged: bool = False
    latencies: list[float] = field(default_factory=list)  # seconds, event → every channel published it
    unconverged: int = 0  # changes still waiting when the demo ended
    oversells: dict[str, int] = field(default_factory=dict)
    cycle_seconds: list[float] = field(default_factory=list)
    # The same, for the changes made once the first sync cycle (the initial load) had finished: the
    # steady state a running deployment lives in, where every cycle is a quick one.
    steady_latencies: list[float] = field(default_factory=list)
    steady_unconverged: int = 0

    @staticmethod
    def _quantiles(values: list[float]) -> dict:
        q = statistics.quantiles(sorted(values), n=100) if len(values) > 1 else None
        return {"p50_seconds": round(q[49], 3) if q else None, "p95_seconds": round(q[94], 3) if q else None,
                "events": len(values)}

    def latency_figures(self) -> dict:
        """Every measured change, and (`after_first_cycle`) those made after the initial load."""
        return {**self._quantiles(self.latencies), "unconverged": self.unconverged,
                "after_first_cycle": {**self._quantiles(self.steady_latencies), "unconverged": self.steady_unconverged}}


def _scalar(conn, query: str, params=()):
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def unsettled_drift(wh: Warehouse) -> int:
    """Drift a cycle should still act on: lag, missed or unexplained, not waiting in the review queue."""
    with wh.admin_connect() as conn:
        return _scalar(conn, """
            select count(*) from marts.fct_channel_drift d
            where d.drift_class = any(%s)
              and not (d.channel_role = 'master' and d.drift_class = 'missed_event')
              and not exists (
                select 1 from ops.corrections c
                where c.channel = d.channel and c.sku = d.sku and c.location = d.location
                  and c.status in ('needs_review', 'rejected'))""", (list(SETTLE_CLASSES),))


def run_demo(settings: Settings, skus: int = 2000, seed: int = 7, max_cycles: int = 6,
             live_rate: float = 2.0, out=print, state: DemoState | None = None,
             traffic_cycles: int | None = None) -> int:
    """Run the demo; `state` (optional) receives the cycles, convergence, latency and oversell figures.
    Live traffic flows during the first cycles and stops for the last ones (up to three) or once the
    channels converged; with `traffic_cycles` it flows during exactly that many cycles (the bench)."""
    from orchestration.defs.sync.factory import COMPLETE_QUICK_JOB
    from orchestration.lib.gx import build_data_docs
    from orchestration.lib.importer import import_file
    from orchestration.lib.registry import load_registry
    from orchestration.lib.runner import run_cycle
    from simulator import Scenario, World
    from simulator.scenario import CHANNELS
    from simulator.server import demo_faults, start_simulators
    from simulator.world import ConvergenceProbe

    started = time.monotonic()
    demo_dir = settings.home / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    anchor = datetime.now(UTC).replace(microsecond=0)
    with stage(f"building the demo retailer ({skus:,} SKUs)"):
        world = World(Scenario(seed=seed, skus=skus, days=7, anchor=anchor, store_opening="receipt",
                               legacy_sync_minutes=15))
        demo_faults(world)
    tokens = {name: f"demo-{name}-token" for name in CHANNELS}
    out(f"demo retailer: {skus} SKUs, {len(world.catalog.locations)} locations, {len(world.movements)} events in a week of history")

    with stage("starting the channel simulators"):
        simulators = start_simulators(world, options=simulator_options(tokens))
    # One warm dbt for every cycle's build (orchestration.lib.dbt_warm): dbt is imported once, not per cycle.
    with simulators as sims, warm_dbt():
        wh = open_warehouse(settings)
        files = world.write_files(demo_dir / "files")
        registry_path = demo_dir / "channels.yaml"
        registry_path.write_text(yaml.safe_dump(demo_registry(sims.base_urls, world), sort_keys=False))
        registry = load_registry(registry_path)
        with stage("importing the retailer's files"):
            for kind in REFERENCE_FILES:
                import_file(wh, kind, files[kind])
            imported = deliver_exports(wh, world, demo_dir / "files", registry)
        out("imported: " + ", ".join(f"{name} {r.loaded} movements" for name, r in imported.items()))

        for name, channel in registry.channels.items():  # the simulators' tokens, as a real deployment's env
            os.environ[channel.token_env] = tokens[name]
        demo_settings = replace(settings, channels_file=registry_path)
        # Measured from outside, on the simulators' truth: how long each change takes to reach every
        # channel that publishes it (the SKUs the fault plan reports in the wrong unit wait for a person).
        probe = ConvergenceProbe(world, exclude=set(world.faults["shopify"].uom_skus)).start()
        traffic = WallClockTraffic(world, live_rate)
        state = state if state is not None else DemoState()
        steady_from = None  # when the first cycle ended
        try:
            for cycle in range(1, max_cycles + 1):
                # Live traffic for the first cycles; the last ones (up to three) settle.
                if traffic_cycles is not None:
                    settle = cycle > traffic_cycles
                else:
                    settle = cycle >= max(2, max_cycles - 2) or (cycle > 2 and state.converged)
                if not traffic.paused and settle:
                    # Let the last cycles settle what is in flight: no new traffic, and the warehouse
                    # ships the channel orders it still has open.
                    traffic.pause()
                    world.ship_open_orders()
                if cycle > 1:  # the ERP and the API-less POS export what happened since the last cycle
                    deliver_exports(wh, world, demo_dir / "files", registry)
                with stage(f"sync cycle {cycle} of at most {max_cycles}"):
                    # The first cycle builds and tests everything; the next ones take the quick path.
                    result = run_cycle(demo_settings, quiet=True, data_docs=False, quick=cycle > 1)
                state.cycles = cycle
                state.cycle_seconds.append(result.seconds)
                if cycle == 1:
                    steady_from = time.monotonic()
                if not result.success:
                    build_data_docs(settings.home)
                    out(f"cycle {cycle} FAILED in {result.seconds:.0f}s; see the run in `inventory-sync dev`")
                    out(result.summary())
                    return 2
                remaining = unsettled_drift(wh)
                out(f"cycle {cycle}: ok in {result.seconds:.0f}s, {remaining} drift rows still to settle")
                if remaining == 0 and traffic.paused:
                    state.converged = True
                    break
                state.converged = remaining == 0
        finally:
            traffic.stop()
            probe.stop()
            state.latencies, state.unconverged = list(probe.latencies), probe.pending_count()
            if steady_from is not None:
                state.steady_latencies = [lat for t, lat in probe.samples if t >= steady_from]
                state.steady_unconverged = probe.pending_count(since=steady_from)
            state.oversells = dict(world.oversells)
        if state.cycles > 1:
            # What the quick cycles left for a full build (the other marts, the other data tests, the advisory
            # checks), on the data the last cycle built: afterwards every mart is current and every test has
            # run, as after a full build (complete_quick_cycles_job; the nightly reconciliation does this in
            # production).
            with stage("completing the build: the other marts and every data test"):
                result = run_cycle(demo_settings, quiet=True, data_docs=False, job_name=COMPLETE_QUICK_JOB)
            if not result.success:
                build_data_docs(settings.home)
                out(f"completing the build FAILED in {result.seconds:.0f}s; see the run in `inventory-sync dev`")
                out(result.summary())
                return 2
            warned = f", {len(result.checks_failed)} checks warn" if result.checks_failed else ""
            out(f"build completed (the other marts, every data test the quick cycles left): ok in {result.seconds:.0f}s{warned}")
        build_data_docs(settings.home)  # once, from every cycle's validation results
        out(summary(wh, world, registry, time.monotonic() - started, traffic.events, state))
    return 0


def deliver_exports(wh: Warehouse, world, directory: Path, registry) -> dict:
    """The retailer's periodic file exports (the ERP's purchase ledger, the POS systems without an API),
    written from the simulated retailer and imported. Whole files each time: a re-import of rows it
    already has changes nothing, so only what happened since the last export lands."""
    from orchestration.lib.importer import import_file

    files = world.write_files(directory)
    imported = {"erp": import_file(wh, "movements", files["movements"], source="erp", layouts=registry.file_layouts)}
    for source in POS_EXPORTS:
        imported[source] = import_file(wh, "movements", files[source], source=source, layouts=registry.file_layouts)
    return imported


def summary(wh: Warehouse, world, registry, seconds: float, live_events: int, state: DemoState) -> str:
    lines = [f"\n== inventory-sync demo: {state.cycles} sync cycles in {seconds:.0f}s "
             f"({'converged' if state.converged else 'not yet converged'}; {live_events} live events meanwhile) =="]
    with wh.admin_connect() as conn:
        lines.append("\nevents landed per channel (raw):")
        for name, channel in registry.channels.items():
            counts = []
            for entity in channel.entities:
                n = _scalar(conn, f"select count(*) from raw.{channel.table(entity)}")  # noqa: S608 - registry names
                counts.append(f"{entity} {n}")
            lines.append(f"  {name:<9} " + ", ".join(counts))
        files = conn.execute("select source, count(*) from raw.file_movements group by source order by source").fetchall()
        lines.append("  file      " + ", ".join(f"{s} {n}" for s, n in files))
        ledger = _scalar(conn, "select count(*) from marts.fct_stock_movements")
        held = _scalar(conn, "select count(*) from intermediate.int_movements_quarantined")
        lines.append(f"  unified ledger: {ledger} movements ({held} held in quarantine with a reason)")
        lines.append("\ndrift found and classified (fct_channel_drift):")
        for cls, n, value in conn.execute(
            "select drift_class, count(*), coalesce(sum(abs(drift_value)), 0) from marts.fct_channel_drift"
            " where drift_class <> 'none' group by 1 order by 2 desc"
        ).fetchall():
            lines.append(f"  {cls:<13} {n:>6} rows  {Decimal(value):>12,.2f} in value")
        lines.append("\ncorrections (ops.corrections):")
        for status, n in conn.execute("select status, count(*) from ops.corrections group by 1 order by 2 desc").fetchall():
            lines.append(f"  {status:<13} {n:>6}")
        keys = conn.execute(
            "select count(*), count(*) filter (where n > 1) from"
            " (select idempotency_key, count(*) filter (where outcome = 'applied') as n from ops.sync_log group by 1) k"
        ).fetchone()
        lines.append(f"  sync_log: {keys[0]} idempotency keys, {keys[1]} applied more than once")
        fifo, avco = conn.execute(
            "select coalesce(sum(inventory_value_fifo), 0), coalesce(sum(inventory_value_avco), 0) from marts.fct_stock_positions"
        ).fetchone()
        lines.append(f"\nstock value: FIFO {Decimal(fifo):,.2f}   AVCO {Decimal(avco):,.2f}   (difference {Decimal(fifo - avco):,.2f})")
    lat = state.latency_figures()
    if lat["events"]:
        lines.append(f"\nevent to converged (stock changes reaching every publishing channel, measured on the simulators): "
                     f"p50 {lat['p50_seconds']:.0f}s, p95 {lat['p95_seconds']:.0f}s over {lat['events']} changes"
                     f" ({lat['unconverged']} still waiting)")
        steady = lat["after_first_cycle"]
        if steady["events"] > 1:
            lines.append(f"  made after the first cycle (quick cycles only): p50 {steady['p50_seconds']:.0f}s, "
                         f"p95 {steady['p95_seconds']:.0f}s over {steady['events']} changes ({steady['unconverged']} still waiting)")
    oversold = ", ".join(f"{k} {v}" for k, v in sorted(state.oversells.items())) or "none"
    lines.append(f"oversells during the demo (channel sales the master's free stock could not cover): {oversold}")
    lines += [
        "\nwhere to look next:",
        "  inventory-sync dev                         the Dagster UI (asset graph, checks, runs)",
        "  inventory-sync review list                 corrections waiting for a person",
        "  inventory-sync query \"select * from marts.fct_channel_drift where drift_class <> 'none' limit 20\"",
        f"  {Path(wh.settings.home) / 'gx' / 'data_docs' / 'index.html'}   Great Expectations Data Docs",
    ]
    return "\n".join(lines)
