"""Run every channel simulator over one world: in background threads (tests, demo) or in the
foreground (`python -m simulator`, `inventory-sync simulate`).

`start_simulators(world)` binds each channel to a free loopback port and returns a `SimulatorSet`
(`.base_urls`, `.stop()`, context manager).  `main(argv)` is the CLI entry point: it prints exactly
one JSON line `{"shopify": "http://127.0.0.1:PORT", ...}` and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from .channels.amazon import AmazonApp
from .channels.base import ChannelApp, ChannelServer
from .channels.shiphero import ShipHeroApp
from .channels.shopify import ShopifyApp
from .channels.square import SquareApp
from .channels.toast import ToastApp
from .faults import FaultPlan
from .scenario import Scenario
from .world import World

APPS: dict[str, type[ChannelApp]] = {
    "shopify": ShopifyApp,
    "square": SquareApp,
    "amazon": AmazonApp,
    "shiphero": ShipHeroApp,
    "toast": ToastApp,
}


class SimulatorSet:
    def __init__(self, world: World, servers: dict[str, ChannelServer], live: _LiveTraffic | None) -> None:
        self.world, self.servers, self._live = world, servers, live
        self.base_urls = {name: s.base_url for name, s in servers.items()}

    def app(self, channel: str) -> ChannelApp:
        return self.servers[channel].app

    def stop(self) -> None:
        if self._live:
            self._live.stop()
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> SimulatorSet:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _LiveTraffic:
    """Ticks the world in the background: `events_per_second` events, each one simulated 30 s."""

    def __init__(self, world: World, events_per_second: float) -> None:
        self.world, self.interval = world, 1.0 / events_per_second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-live-traffic", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.world.tick(1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def start_simulators(
    world: World,
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    live_events_per_second: float = 0.0,
) -> SimulatorSet:
    """Start one HTTP server per channel.  `options[channel]` goes to that channel's app constructor
    (tokens, bucket sizes, `rate_scale`, `apply_delay`, ...); port 0 or absent means a free port."""
    servers: dict[str, ChannelServer] = {}
    try:
        for name, cls in APPS.items():
            app = cls(world, **(options or {}).get(name, {}))
            servers[name] = ChannelServer(app, host, (ports or {}).get(name, 0)).start()
    except Exception:
        for s in servers.values():
            s.stop()
        raise
    live = _LiveTraffic(world, live_events_per_second) if live_events_per_second > 0 else None
    return SimulatorSet(world, servers, live)


def demo_faults(world: World) -> None:
    """Install `FaultPlan.demo` on every channel; unit confusion hits a few SKUs that have case packs."""
    packed = [s.sku for s in world.catalog.skus if s.packs][:3]
    for name in APPS:
        world.set_faults(name, FaultPlan.demo(name, packed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inventory-sync simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skus", type=int, default=2000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--faults", choices=("none", "demo"), default="none")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--live",
        type=float,
        default=0.0,
        metavar="EVENTS_PER_SECOND",
        help="generate live traffic in the background",
    )
    parser.add_argument(
        "--now",
        action="store_true",
        help="end the generated history at the current wall-clock minute (not deterministic)",
    )
    parser.add_argument("--write-files", metavar="DIR", help="also write the file sources to DIR")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]  # `inventory-sync simulate -- --skus 10` hands the separator through
    args = parser.parse_args(argv)

    scenario = Scenario(seed=args.seed, skus=args.skus, days=args.days)
    if args.now:
        scenario = Scenario(
            seed=args.seed,
            skus=args.skus,
            days=args.days,
            anchor=datetime.now(UTC).replace(second=0, microsecond=0),
        )
    world = World(scenario)
    if args.faults == "demo":
        demo_faults(world)
    if args.write_files:
        world.write_files(args.write_files)
    sims = start_simulators(world, host=args.host, live_events_per_second=args.live)
    print(json.dumps(sims.base_urls), flush=True)

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    sims.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
