"""Fault plans: what a channel simulator does wrong, switchable at runtime, seeded and deterministic.

One `FaultPlan` per channel lives on the world (`world.faults[channel]`).  Transport faults (errors,
429s, hangs, cut bodies, dropped replies) are applied by `simulator.channels.base`; data faults
(duplicates, late and missed events, unit confusion, hand edits, write races) by the world and the
channel views.  Every random decision draws from the channel's own `random.Random`, reseeded from
`seed` whenever a plan is installed, so a sequential client sees the same faults on every run.
Catalogue: reliability.md §4.3 (F-500, F-429, F-TMO, F-PAGE, F-DUP, F-ORDER, F-KILL-PUSH, F-CAS).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

TRUNCATIONS = ("short_with_next", "cut_json", "early_has_next_false")
UOM_MODES = ("cases_as_eaches", "eaches_as_cases")


@dataclass
class FaultPlan:
    seed: int = 0
    # Transport (every non-control request)
    latency_ms: int = 0  # added to every reply
    hang_rate: float = 0.0  # probability that a request sleeps `hang_seconds` before replying
    hang_seconds: float = 30.0
    error_rate: dict[int, float] = field(default_factory=dict)  # e.g. {500: 0.2, 503: 0.1}
    throttle_rate: float = 0.0  # probability of a spurious 429 in the channel's own shape
    retry_after: float | None = 1.0  # seconds sent in Retry-After on those 429s; None = no header
    # Pages of list endpoints
    truncate_page: str | None = None  # one of TRUNCATIONS
    truncate_rate: float = 1.0  # share of multi-item pages the truncation hits
    # Change feeds (Square changes, ShipHero inventory_changes)
    dup_rate: float = 0.0  # probability that a served page repeats one of its or an earlier event
    late_rate: float = 0.0  # probability a new event is back-dated (appears after cursors passed it)
    late_max_seconds: int = 6 * 3600
    missed_rate: float = 0.0  # probability a new event changes the level but never enters the feed
    # Levels
    uom_skus: list[str] = field(default_factory=list)  # SKUs this channel counts in the wrong unit
    uom_mode: str = "cases_as_eaches"  # one of UOM_MODES, using the SKU's largest pack factor
    hand_edit_rate: float = 0.0  # per tick event: a level changed by hand, with no event
    # Writes
    apply_then_drop_rate: float = 0.0  # mutation applied, then the connection dropped unanswered
    cas_race_rate: float = 0.0  # a sale lands between the client's read and its write

    def __post_init__(self) -> None:
        if self.truncate_page is not None and self.truncate_page not in TRUNCATIONS:
            raise ValueError(f"truncate_page must be one of {TRUNCATIONS}")
        if self.uom_mode not in UOM_MODES:
            raise ValueError(f"uom_mode must be one of {UOM_MODES}")
        # JSON object keys arrive as strings from POST /__faults.
        self.error_rate = {int(k): float(v) for k, v in self.error_rate.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rng(self, channel: str) -> random.Random:
        return random.Random(f"faults:{channel}:{self.seed}")

    @classmethod
    def demo(cls, channel: str, uom_skus: list[str]) -> FaultPlan:
        """A mild, always-on plan for `inventory-sync demo`: every fault class shows up a little."""
        plan = cls(
            seed=7,
            error_rate={500: 0.02, 503: 0.01},
            throttle_rate=0.02,
            retry_after=0.5,
            hand_edit_rate=0.002,
            apply_then_drop_rate=0.02,
        )
        if channel in ("square", "shiphero"):
            plan.dup_rate, plan.late_rate, plan.missed_rate = 0.05, 0.03, 0.005
            plan.truncate_page, plan.truncate_rate = "short_with_next", 0.1
        if channel == "shopify":
            plan.uom_skus, plan.cas_race_rate = uom_skus, 0.05
        return plan


def page_bounds(plan: FaultPlan, rng: random.Random, start: int, size: int, total: int) -> tuple[int, bool]:
    """End index of the page [start, end) and whether the reply claims a next page.

    `short_with_next` serves fewer items but keeps the cursor going (harmless to a correct client);
    `early_has_next_false` serves a partial page and says it was the last (only count reconciliation
    catches it).  `cut_json` is applied to the bytes later, by the transport.
    """
    end = min(start + size, total)
    has_next = end < total
    if (
        plan.truncate_page in ("short_with_next", "early_has_next_false")
        and end - start > 1
        and rng.random() < plan.truncate_rate
    ):
        end = start + max(1, (end - start) // 2)
        has_next = plan.truncate_page == "short_with_next"
    return end, has_next
