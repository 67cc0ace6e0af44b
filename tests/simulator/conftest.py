"""Fixtures for the simulator tests: a small seeded world and every channel served on loopback.

The world is rebuilt per test (about 0.1 s) because tests write to the channels.  Amazon's published
rate limits (2 requests/s for summaries) are scaled up and its listing patches applied after 0.2 s,
so the suite stays fast; the tests that check those limits start their own app with the real ones.
"""

from __future__ import annotations

import httpx
import pytest

from simulator import FaultPlan, World, start_simulators

# One pooled client per module: a fresh httpx client per call costs ~30 ms of TLS setup.
HTTP = httpx.Client(timeout=10)

FAST = {"amazon": {"rate_scale": 100.0, "apply_delay": 0.2}}


@pytest.fixture
def world() -> World:
    return World(skus=24, seed=7, days=5)


@pytest.fixture
def sims(world):
    with start_simulators(world, options=FAST) as s:
        yield s


@pytest.fixture
def set_faults(sims):
    """Install a fault plan through the control endpoint, as an outside harness would."""

    def install(channel: str, **fields) -> None:
        HTTP.post(
            f"{sims.base_urls[channel]}/__faults", json=FaultPlan(**fields).to_dict()
        ).raise_for_status()

    return install


@pytest.fixture
def control(sims):
    """GET a control endpoint (`/__truth`, `/__applied`, `/__faults`) of a channel."""
    return lambda channel, path: HTTP.get(f"{sims.base_urls[channel]}{path}").json()
