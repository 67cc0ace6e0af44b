"""Channel simulators for inventory-sync: a seeded retailer (`World`) served through the real request
and response shapes of Shopify, Square, Amazon SP-API, ShipHero and Toast, with fault injection.

    from simulator import World, start_simulators
    world = World(skus=20, seed=1)
    with start_simulators(world) as sims:
        sims.base_urls["square"]
"""

from .faults import FaultPlan
from .scenario import Scenario
from .server import SimulatorSet, main, start_simulators
from .world import Movement, World

__all__ = ["FaultPlan", "Movement", "Scenario", "SimulatorSet", "World", "main", "start_simulators"]
