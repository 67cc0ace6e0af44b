"""`inventory-sync demo`: the whole loop on the demo retailer, then a summary."""

from __future__ import annotations

from orchestration.settings import Settings


def run_demo(settings: Settings, skus: int = 2000, seed: int = 7) -> int:
    from orchestration.lib.runner import run_cycle

    result = run_cycle(settings)
    print(result.summary())
    return 0 if result.success else 2
