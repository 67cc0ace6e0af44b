"""The simulated retailer over time: ground truth, every channel's own state, and live traffic.

`World` owns
- the physical ground truth: on-hand per (sku, location) in base units, stock in transit, and the
  canonical movement log (DESIGN §5 columns plus `source`, `channel_event_id`, `quantity_base`);
- each channel's own view, in that channel's identifiers and units (Shopify levels, Square counts and
  changes, ShipHero products and inventory changes, Amazon FBA summaries and MFN listings, Toast
  items), plus the CSV exports of the POS systems without an API and the purchase/ERP ledger;
- the per-channel fault plans and the record of applied mutations.

Channel masters are kept equal to the truth when the world generates traffic; only faults (hand
edits, unit confusion) and writes from outside make them differ.  Non-master channels (Shopify,
Amazon MFN) are seeded in sync and then only move by their own sales and by pushed corrections, so
drift appears the way it does in production.  All randomness comes from seeded `random.Random`s and
the simulated clock (`world.now`), so a seed reproduces the same history.  Every public method takes
`world.lock`: the channel servers run in threads.
"""

from __future__ import annotations

import base64
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from .faults import FaultPlan
from .files import FILE_SOURCE_MAPPINGS, write_files
from .scenario import (
    AMAZON_MFN_CHANNEL,
    CHANNELS,
    FILE_SOURCES,
    STORES,
    WAREHOUSES,
    Catalog,
    Listing,
    Policy,
    Scenario,
    build_catalog,
)

CURRENCY = "USD"


def iso(ts: datetime) -> str:
    """RFC 3339 UTC with milliseconds, the way the channels print timestamps."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass
class Movement:
    """One row of the ground-truth log, in the canonical format (DESIGN §5)."""

    event_id: str
    occurred_at: datetime
    sku: str
    location: str
    movement_type: str
    quantity: int  # signed, in `uom`; for physical_count the counted level
    uom: str
    unit_cost: Decimal | None
    currency: str
    reference: str
    source: str  # the system that reports it: erp, shiphero, square, toast, amazon, touchbistro, sumup
    channel_event_id: str  # the master channel's own record of the same event ('' if none)
    quantity_base: int

    def row(self) -> dict[str, str]:
        return {
            "event_id": self.event_id,
            "occurred_at": iso(self.occurred_at),
            "sku": self.sku,
            "location": self.location,
            "movement_type": self.movement_type,
            "quantity": str(self.quantity),
            "uom": self.uom,
            "unit_cost": "" if self.unit_cost is None else str(self.unit_cost),
            "currency": self.currency if self.unit_cost is not None else "",
            "reference": self.reference,
        }


@dataclass
class _Order:
    order_id: str
    channel: str
    sku: str
    location: str
    quantity: int
    ship_at: datetime
    listing: Listing | None = None


@dataclass
class _Transfer:
    transfer_id: str
    sku: str
    source: str
    destination: str
    quantity: int
    arrive_at: datetime


@dataclass
class _Receipt:
    event_id: str
    sku: str
    location: str
    uom: str
    unit_cost: Decimal
    remaining_base: int


@dataclass
class _PO:
    po: str
    sku: str
    location: str
    uom: str
    ordered: int
    received: int = 0


@dataclass
class Applied:
    """What a channel did with one idempotency key (or content hash, for channels without keys)."""

    requests: int = 0
    applied: int = 0
    first_at: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


class World:
    """A seeded retailer: `World(skus=20, seed=1, days=7)` or `World(Scenario(...))`.

    Construction generates `days` of history ending at `scenario.anchor`; `tick()` adds live traffic.
    """

    def __init__(self, scenario: Scenario | None = None, **kwargs: Any) -> None:
        self.scenario = scenario or Scenario(**kwargs)
        self.catalog: Catalog = build_catalog(self.scenario)
        self.lock = threading.RLock()
        self._rng = random.Random(f"world:{self.scenario.seed}")
        # Ids come from their own stream so that writes from outside (which mint ids) do not shift
        # the traffic that follows.
        self._id_rng = random.Random(f"ids:{self.scenario.seed}")
        self._ids = itertools.count(1)
        self.now = self.scenario.anchor - timedelta(days=self.scenario.days)
        self._last_event_at = self.now - timedelta(seconds=1)

        cat = self.catalog
        self._listing = {(x.channel, x.channel_sku, x.channel_location): x for x in cat.listings}
        self._master_listing = {(x.channel, x.sku, x.location): x for x in cat.listings}
        self._policies = {p.channel: p for p in cat.policies}
        self._published = [x for x in cat.listings if x.channel == "shopify"
                           or (x.channel == "amazon" and x.channel_location == AMAZON_MFN_CHANNEL)]
        self._kit_parts: dict[str, list[tuple[str, int]]] = {}
        kits_of: dict[str, set[str]] = {}
        for kit, comp, per in cat.kit_components:
            self._kit_parts.setdefault(kit, []).append((comp, per))
            kits_of.setdefault(comp, set()).add(kit)
        # Published listings that depend on a (sku, location)'s on-hand: its own, and kits using it.
        self._published_by_key: dict[tuple[str, str], list[Listing]] = {}
        by_sku_location: dict[tuple[str, str], list[Listing]] = {}
        for x in self._published:
            by_sku_location.setdefault((x.sku, x.location), []).append(x)
        for x in self._published:
            key = (x.sku, x.location)
            deps = [key] + [(comp, x.location) for comp, _ in self._kit_parts.get(x.sku, [])]
            for dep in deps:
                self._published_by_key.setdefault(dep, []).append(x)
        self._changed: set[tuple[str, str]] = set()  # on-hand keys moved since the last legacy sync
        # Channel sales accepted on a published figure that the master's free stock could not cover.
        self.oversells: dict[str, int] = {}
        self.observers: list = []  # callables(key) told of every on-hand change (see ConvergenceProbe)
        self._by_location = {loc.location: loc for loc in cat.locations}
        self.sellable = [s.sku for s in cat.skus if not s.is_kit]
        self._mfn = [x for x in cat.listings_for("amazon") if x.channel_location == AMAZON_MFN_CHANNEL]
        self._stocked: dict[str, list[str]] = {loc.location: [] for loc in cat.locations}
        for lst in cat.listings:
            if lst.channel == self._by_location[lst.location].master_channel:
                self._stocked[lst.location].append(lst.sku)

        # Ground truth
        self.on_hand: dict[tuple[str, str], int] = {}
        self.movements: list[Movement] = []
        self.erp: list[Movement] = []
        self.pos_exports: dict[str, list[Movement]] = {src: [] for src in FILE_SOURCES}
        self.in_transit: dict[str, _Transfer] = {}
        self.pending_orders: list[_Order] = []
        self._open_pos: list[_PO] = []
        self._receipts: list[_Receipt] = []
        self._sales: list[tuple[Movement, int]] = []  # (sale movement, units still returnable)

        # Channel state, in each channel's identifiers
        self.shopify_levels: dict[tuple[str, str], dict[str, Any]] = {}
        self.square_counts: dict[tuple[str, str], dict[str, Any]] = {}
        self.square_changes: list[dict[str, Any]] = []
        self.shiphero_products: dict[tuple[str, str], dict[str, Any]] = {}
        self.shiphero_changes: list[dict[str, Any]] = []
        self.amazon_fba: dict[str, dict[str, Any]] = {}
        self.amazon_mfn: dict[str, dict[str, Any]] = {}
        self.toast_items: dict[str, dict[str, Any]] = {}

        self.faults: dict[str, FaultPlan] = {}
        self.fault_rng: dict[str, random.Random] = {}
        for ch in CHANNELS:
            self.set_faults(ch, FaultPlan())
        self.applied: dict[str, dict[str, Applied]] = {ch: {} for ch in CHANNELS}

        self._seed_channels()
        self._generate_history()

    # ------------------------------------------------------------------ public API

    def set_faults(self, channel: str, plan: FaultPlan) -> None:
        with self.lock:
            self.faults[channel] = plan
            self.fault_rng[channel] = plan.rng(channel)

    def tick(self, n: int = 1, seconds: float | None = None) -> list[Movement]:
        """Advance live traffic by `n` random events spread over `seconds` (default 30 s each).

        Returns the ground-truth movements that happened (including shipments and transfer
        arrivals that fell due)."""
        with self.lock:
            start = len(self.movements)
            step = timedelta(seconds=(seconds if seconds is not None else 30.0 * n) / max(n, 1))
            for _ in range(n):
                self.now += step
                self._process_due()
                self._random_event()
                self._maybe_hand_edits()
            if n == 0 and seconds:
                self.now += timedelta(seconds=seconds)
                self._process_due()
            return self.movements[start:]

    def ship_open_orders(self) -> int:
        """The warehouse works through its backlog now: every open channel order ships (no new traffic).
        Returns how many orders were due."""
        with self.lock:
            for order in self.pending_orders:
                order.ship_at = min(order.ship_at, self.now)
            count = len(self.pending_orders)
            self._process_due()
            return count

    def truth(self) -> dict[tuple[str, str], int]:
        with self.lock:
            return dict(self.on_hand)

    def listing(self, channel: str, channel_sku: str, channel_location: str) -> Listing | None:
        return self._listing.get((channel, channel_sku, channel_location))

    def master_listing(self, channel: str, sku: str, location: str) -> Listing | None:
        return self._master_listing.get((channel, sku, location))

    def policy(self, channel: str) -> Policy:
        return self._policies[channel]

    def publish_quantity(self, channel: str, available: int) -> int:
        """What a non-master channel should show for `available` master units (DESIGN §8 order)."""
        p = self.policy(channel)
        if available <= p.safety_buffer:
            return 0
        q = available * p.percentage // 100
        if p.maximum is not None:
            q = min(q, p.maximum)
        if p.minimum is not None:
            q = max(q, p.minimum)
        return q

    def uom_view(self, channel: str, sku: str, quantity: float) -> float:
        """A channel's quantity as it reports it, after the unit-confusion fault (if any)."""
        plan = self.faults[channel]
        if sku not in plan.uom_skus:
            return quantity
        factor = self.catalog.sku(sku).packs.get(self.catalog.sku(sku).case_uom or "", 1)
        if plan.uom_mode == "cases_as_eaches":
            return quantity // factor if isinstance(quantity, int) else quantity / factor
        return quantity * factor

    def uom_unview(self, channel: str, sku: str, quantity: int) -> int:
        """Inverse of `uom_view`: the stored figure that a channel would report as `quantity`."""
        plan = self.faults[channel]
        if sku not in plan.uom_skus:
            return quantity
        factor = self.catalog.sku(sku).packs.get(self.catalog.sku(sku).case_uom or "", 1)
        return quantity * factor if plan.uom_mode == "cases_as_eaches" else quantity // factor

    def record_request(self, channel: str, key: str, applied: bool, summary: dict[str, Any]) -> None:
        with self.lock:
            entry = self.applied[channel].setdefault(key, Applied(first_at=iso(self.now), summary=summary))
            entry.requests += 1
            entry.applied += int(applied)

    def hand_edit(self, channel: str, channel_sku: str, channel_location: str, quantity: int) -> None:
        """Someone types a new level into the channel's back office: no event anywhere."""
        with self.lock:
            lst = self._listing[(channel, channel_sku, channel_location)]
            self._set_channel_level(lst, quantity)

    def next_id(self, prefix: str = "") -> str:
        return f"{prefix}{next(self._ids):07d}"

    def token(self, n: int = 24) -> str:
        """A seeded opaque id in the style of Square's (upper-case base32)."""
        bits = self._id_rng.getrandbits(n * 5)
        return base64.b32encode(bits.to_bytes((n * 5 + 7) // 8, "big")).decode()[:n]

    def write_files(self, directory: str | Path) -> dict[str, Path]:
        """Reference CSVs, the ERP ledger and the POS exports (see `simulator.files`); {name: path}."""
        with self.lock:
            return write_files(self, Path(directory))

    def file_source_mappings(self) -> dict[str, dict[str, Any]]:
        """Per POS export layout: column → canonical column, value maps, timestamp format, signs."""
        return FILE_SOURCE_MAPPINGS

    # ------------------------------------------------------------------ channel levels

    def channel_level(self, lst: Listing) -> int:
        """The channel's own stock figure for a listing, in the channel's unit, before view faults."""
        key = (lst.channel_sku, lst.channel_location)
        if lst.channel == "shopify":
            return self.shopify_levels[key]["available"]
        if lst.channel == "square":
            return self.square_counts[key]["IN_STOCK"]
        if lst.channel == "shiphero":
            return self.shiphero_products[key]["on_hand"]
        if lst.channel == "toast":
            return int(self.toast_items[lst.channel_sku]["quantity"] or 0)
        if lst.channel == "amazon":
            if lst.channel_location == AMAZON_MFN_CHANNEL:
                return self.amazon_mfn[lst.channel_sku]["quantity"]
            return self.amazon_fba[lst.channel_sku]["fulfillable"]
        raise KeyError(lst.channel)

    def _set_channel_level(self, lst: Listing, quantity: int) -> None:
        key = (lst.channel_sku, lst.channel_location)
        if lst.channel == "shopify":
            lvl = self.shopify_levels[key]
            lvl["available"], lvl["updated_at"] = quantity, self.now
        elif lst.channel == "square":
            cnt = self.square_counts[key]
            cnt["IN_STOCK"], cnt["calculated_at"] = quantity, self.now
        elif lst.channel == "shiphero":
            prod = self.shiphero_products[key]
            prod["on_hand"], prod["updated_at"] = quantity, self.now
        elif lst.channel == "toast":
            self._toast_set(lst.channel_sku, quantity)
        elif lst.channel_location == AMAZON_MFN_CHANNEL:
            self.amazon_mfn[lst.channel_sku].update(quantity=quantity, updated=self.now)
        else:
            self.amazon_fba[lst.channel_sku].update(fulfillable=quantity, updated=self.now)

    def _toast_set(self, guid: str, quantity: float) -> None:
        item = self.toast_items[guid]
        if quantity > 0:
            item.update(status="QUANTITY", quantity=float(quantity))
        else:
            item.update(status="OUT_OF_STOCK", quantity=None)
        item["updated"] = self.now

    # ------------------------------------------------------------------ seeding

    def _seed_channels(self) -> None:
        t0 = self.now
        for lst in self.catalog.listings:
            key = (lst.channel_sku, lst.channel_location)
            if lst.channel == "shopify":
                self.shopify_levels[key] = {"available": 0, "committed": 0, "updated_at": t0}
            elif lst.channel == "square":
                self.square_counts[key] = {"IN_STOCK": 0, "WASTE": 0, "calculated_at": t0}
            elif lst.channel == "shiphero":
                n = len(self.shiphero_products) + 1
                self.shiphero_products[key] = {
                    "id": base64.b64encode(f"WarehouseProduct:{90000 + n}".encode()).decode(),
                    "legacy_id": 90000 + n,
                    "on_hand": 0,
                    "allocated": 0,
                    "created_at": t0,
                    "updated_at": t0,
                }
            elif lst.channel == "toast":
                self.toast_items[lst.channel_sku] = {
                    "status": "OUT_OF_STOCK",
                    "quantity": None,
                    "updated": t0,
                }
            elif lst.channel == "amazon" and lst.channel_location == AMAZON_MFN_CHANNEL:
                self.amazon_mfn[lst.channel_sku] = {"quantity": 0, "updated": t0}
            elif lst.channel == "amazon":
                self.amazon_fba[lst.channel_sku] = {
                    "fulfillable": 0,
                    "inbound_shipped": 0,
                    "unfulfillable": 0,
                    "updated": t0,
                }

    def _generate_history(self) -> None:
        sc = self.scenario
        # Opening stock: one receipt per SKU at each warehouse and at FBA, then transfers to stores.
        for loc in (*WAREHOUSES, "FBA-US"):
            for sku in self._stocked[loc]:
                self._receipt(sku, loc, opening=True)
        self.now += timedelta(minutes=5)
        for store in STORES:
            for sku in self._stocked[store]:
                if sc.store_opening == "receipt":
                    self._receipt(sku, store, opening=True)
                    continue
                src = max(WAREHOUSES, key=lambda wh: self.on_hand.get((sku, wh), 0))
                qty = min(self._rng.randint(6, 24), self.on_hand.get((sku, src), 0) // 3)
                if qty > 0:
                    self._transfer(sku, src, store, qty, transit=timedelta(minutes=30))
        self.now += timedelta(hours=1)
        self._process_due()
        self._sync_published()

        total = int(len(self.sellable) * sc.days * sc.events_per_sku_day)
        remaining = sc.anchor - self.now
        step = remaining / max(total, 1)
        legacy = timedelta(minutes=sc.legacy_sync_minutes) if sc.legacy_sync_minutes else None
        next_legacy = self.now + legacy if legacy else None
        for _ in range(total):
            self.now += step
            self._process_due()
            self._random_event()
            if next_legacy is not None and self.now >= next_legacy:
                self._sync_published(changed_only=True)
                next_legacy += legacy
        self.now = max(self.now, sc.anchor)

    def _sync_published(self, changed_only: bool = False) -> None:
        """Set the publishing channels to what policy says of the master's on-hand: at the opening (they
        drift afterwards) and, with `changed_only`, as the legacy tool did (only levels that moved)."""
        comps = self._kit_parts
        if changed_only:
            listings = {id(x): x for key in self._changed for x in self._published_by_key.get(key, [])}.values()
        else:
            listings = self._published
        self._changed.clear()
        for lst in listings:
            if lst.channel == "shopify":
                if lst.sku in comps:
                    avail = min(self.on_hand.get((c, lst.location), 0) // per for c, per in comps[lst.sku])
                else:
                    avail = self.on_hand.get((lst.sku, lst.location), 0)
                level = self.shopify_levels[(lst.channel_sku, lst.channel_location)]
                quantity = self.publish_quantity("shopify", avail)
                if level["available"] != quantity:
                    level["available"], level["updated_at"] = quantity, self.now
            elif lst.channel == "amazon" and lst.channel_location == AMAZON_MFN_CHANNEL:
                record = self.amazon_mfn[lst.channel_sku]
                quantity = self.publish_quantity("amazon", self.on_hand.get((lst.sku, lst.location), 0))
                if record["quantity"] != quantity:
                    record["quantity"], record["updated"] = quantity, self.now

    # ------------------------------------------------------------------ truth + master channels

    def _log(
        self,
        movement_type: str,
        sku: str,
        location: str,
        quantity: int,
        *,
        uom: str = "EA",
        unit_cost: Decimal | None = None,
        reference: str = "",
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Movement:
        """Apply one physical event to the truth and to the location's master channel."""
        # Millisecond precision: the channels print milliseconds, so clients can order exactly.
        self.now = self.now.replace(microsecond=self.now.microsecond // 1000 * 1000)
        if self.now <= self._last_event_at:
            # Strictly increasing times: the ledger's order by occurred_at is then the physical order.
            self.now = self._last_event_at + timedelta(milliseconds=1)
        self._last_event_at = self.now
        factor = 1 if uom == "EA" else self.catalog.sku(sku).packs[uom]
        base = quantity * factor
        key = (sku, location)
        before = self.on_hand.get(key, 0)
        after = base if movement_type == "physical_count" else before + base
        self.on_hand[key] = after
        self._changed.add(key)
        for observer in self.observers:
            observer(key)
        master = self._by_location[location].master_channel
        occurred = occurred_at or self.now
        plan, frng = self.faults.get(master), self.fault_rng.get(master)
        if plan and plan.late_rate and movement_type != "physical_count" and frng.random() < plan.late_rate:
            occurred = self.now - timedelta(seconds=frng.randint(60, plan.late_max_seconds))
        hidden = bool(plan and plan.missed_rate and frng.random() < plan.missed_rate)
        channel_event_id = self._master_event(
            master, sku, location, movement_type, before, after, reference, occurred, hidden, event_id
        )
        m = Movement(
            event_id or channel_event_id,
            occurred,
            sku,
            location,
            movement_type,
            quantity,
            uom,
            unit_cost,
            CURRENCY,
            reference,
            "erp" if event_id else master,
            channel_event_id,
            base,
        )
        self.movements.append(m)
        if master in self.pos_exports:
            self.pos_exports[master].append(m)
        return m

    def _master_event(
        self,
        master: str,
        sku: str,
        location: str,
        mtype: str,
        before: int,
        after: int,
        reference: str,
        occurred: datetime,
        hidden: bool,
        erp_id: str | None,
    ) -> str:
        """Reflect a physical change in the master channel's level and change feed; return its id."""
        lst = self._master_listing.get((master, sku, location))
        if master not in self.pos_exports:
            # A count sets the level; anything else moves it by the delta, so that a master that is
            # off (hand edit, pushed write) stays off by the same amount, as a real system would.
            previous = self.channel_level(lst)
            self._set_channel_level(lst, after if mtype == "physical_count" else previous + after - before)
        if master == "shiphero":
            n = next(self._ids)
            change = {
                "id": base64.b64encode(f"InventoryChange:{n}".encode()).decode(),
                "legacy_id": n,
                "user_id": "VXNlcjox",
                "account_id": "QWNjb3VudDox",
                "warehouse_id": lst.channel_location,
                "sku": sku,
                "previous_on_hand": previous,
                "change_in_on_hand": self.channel_level(lst) - previous,
                "reason": _shiphero_reason(mtype, reference, erp_id),
                "cycle_counted": mtype == "physical_count",
                "location_id": None,
                "created_at": occurred,
                "_hidden": hidden,
            }
            self.shiphero_changes.append(change)
            return change["id"]
        if master == "square":
            return self._square_change(
                lst, mtype, previous, self.channel_level(lst), reference, occurred, hidden, erp_id
            )
        if master in ("toast", "amazon"):
            return f"{master}-{next(self._ids):07d}"  # no event feed there: the id is for the truth log
        return f"{master[:2].upper()}-{next(self._ids):07d}"  # file POS: the export row id

    def _square_change(
        self,
        lst: Listing,
        mtype: str,
        before: int,
        after: int,
        reference: str,
        occurred: datetime,
        hidden: bool,
        erp_id: str | None,
    ) -> str:
        delta = after - before
        cid = self.token(24)
        common = {
            "id": cid,
            "catalog_object_id": lst.channel_sku,
            "catalog_object_type": "ITEM_VARIATION",
            "location_id": lst.channel_location,
            "occurred_at": iso(occurred),
            "created_at": iso(self.now),
            "source": {"product": "SQUARE_POS", "name": "Square Point of Sale"},
        }
        if mtype == "physical_count":
            body = {
                "type": "PHYSICAL_COUNT",
                "physical_count": {
                    **common,
                    "reference_id": reference,
                    "state": "IN_STOCK",
                    "quantity": str(after),
                },
            }
        else:
            states = {
                "sale": ("IN_STOCK", "SOLD"),
                "customer_return": ("RETURNED_BY_CUSTOMER", "IN_STOCK"),
                "transfer_in": ("NONE", "IN_STOCK"),
                "transfer_out": ("IN_STOCK", "NONE"),
                "damage": ("IN_STOCK", "WASTE"),
                "receipt": ("NONE", "IN_STOCK"),
                "vendor_return": ("IN_STOCK", "NONE"),
            }
            frm, to = states.get(mtype) or (("NONE", "IN_STOCK") if delta > 0 else ("IN_STOCK", "NONE"))
            if to == "WASTE":
                self.square_counts[(lst.channel_sku, lst.channel_location)]["WASTE"] -= delta
            adj = {
                **common,
                "reference_id": reference,
                "from_state": frm,
                "to_state": to,
                "quantity": str(abs(delta)),
            }
            if erp_id:
                adj["goods_receipt_id"] = erp_id
            body = {"type": "ADJUSTMENT", "adjustment": adj}
        self.square_changes.append({**body, "_created": self.now, "_occurred": occurred, "_hidden": hidden})
        return cid

    # ------------------------------------------------------------------ traffic

    def _random_event(self) -> None:
        kinds = (
            ("store_sale", 34),
            ("shopify_sale", 14),
            ("amazon_sale", 5),
            ("fba_sale", 5),
            ("receipt", 7),
            ("customer_return", 5),
            ("vendor_return", 2),
            ("transfer", 6),
            ("adjustment", 3),
            ("damage", 3),
            ("count", 3),
        )
        kind = self._rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        getattr(self, f"_ev_{kind}")()

    def _pick_stocked(self, location: str) -> str | None:
        skus = self._stocked[location]
        for _ in range(5):
            sku = self._rng.choice(skus)
            if self.on_hand.get((sku, location), 0) > 0:
                return sku
        return None

    def _ev_store_sale(self) -> None:
        store = self._rng.choice(STORES)
        sku = self._pick_stocked(store)
        if sku:
            qty = self._rng.randint(1, min(3, self.on_hand[(sku, store)]))
            m = self._log("sale", sku, store, -qty, reference=f"POS-{self.token(8)}")
            self._sales.append((m, qty))

    def _ev_shopify_sale(self, lst: Listing | None = None) -> None:
        if lst is None:
            lst = self._rng.choice(self.catalog.listings_for("shopify"))
        if self.catalog.sku(lst.sku).is_kit:
            return  # kit levels are published from components; kit orders are out of scope
        lvl = self.shopify_levels[(lst.channel_sku, lst.channel_location)]
        if lvl["available"] <= 0 or self.on_hand.get((lst.sku, lst.location), 0) <= 0:
            return
        qty = self._rng.randint(1, min(2, lvl["available"]))
        self._count_oversell("shopify", lst, qty)
        lvl["available"] -= qty
        lvl["committed"] += qty
        lvl["updated_at"] = self.now
        self._queue_order("shopify", lst, qty)

    def _ev_amazon_sale(self) -> None:
        if not self._mfn:
            return
        lst = self._rng.choice(self._mfn)
        rec = self.amazon_mfn[lst.channel_sku]
        if rec["quantity"] > 0 and self.on_hand.get((lst.sku, lst.location), 0) > 0:
            self._count_oversell("amazon", lst, 1)
            rec["quantity"] -= 1
            rec["updated"] = self.now
            self._queue_order("amazon", lst, 1)

    def free_stock(self, sku: str, location: str) -> int:
        """The master's on-hand less the units open channel orders already hold."""
        held = sum(o.quantity for o in self.pending_orders if o.sku == sku and o.location == location)
        return self.on_hand.get((sku, location), 0) - held

    def _count_oversell(self, channel: str, lst: Listing, qty: int) -> None:
        if self.free_stock(lst.sku, lst.location) < qty:
            self.oversells[channel] = self.oversells.get(channel, 0) + 1

    def published_in_sync(self, key: tuple[str, str]) -> bool:
        """Whether every publishing listing that depends on this on-hand shows what its policy says of
        the master now, as the platform computes it (Shopify: less its own committed units; kits: min
        over components; Amazon MFN: the on-hand, since the channel reports no open orders)."""
        for lst in self._published_by_key.get(key, []):
            if lst.channel == "shopify":
                parts = self._kit_parts.get(lst.sku)
                level = self.shopify_levels[(lst.channel_sku, lst.channel_location)]
                if parts:
                    avail = min(self.on_hand.get((c, lst.location), 0) // per for c, per in parts)
                else:
                    avail = self.on_hand.get((lst.sku, lst.location), 0) - level["committed"]
                if level["available"] != self.publish_quantity("shopify", max(avail, 0)):
                    return False
            else:
                # Amazon shows no open orders to a seller's sync: policy of the master's on-hand.
                shown = self.amazon_mfn[lst.channel_sku]["quantity"]
                if shown != self.publish_quantity("amazon", max(self.on_hand.get((lst.sku, lst.location), 0), 0)):
                    return False
        return True

    def _queue_order(self, channel: str, lst: Listing, qty: int) -> None:
        # The WMS ships hours later: the channel's figure moves first, the warehouse's later (lag).
        ship_at = self.now + timedelta(minutes=self._rng.randint(60, 8 * 60))
        self.pending_orders.append(
            _Order(f"SO-{self.token(8)}", channel, lst.sku, lst.location, qty, ship_at, lst)
        )

    def _ev_fba_sale(self) -> None:
        sku = self._pick_stocked("FBA-US") if self._stocked["FBA-US"] else None
        if sku:
            m = self._log("sale", sku, "FBA-US", -1, reference=f"AMZ-{self.token(10)}")
            self._sales.append((m, 1))

    def _ev_receipt(self) -> None:
        if self._open_pos and self._rng.random() < 0.4:
            po = self._open_pos.pop(self._rng.randrange(len(self._open_pos)))
            self._receive(po, po.ordered - po.received)
        else:
            loc = (
                "FBA-US"
                if self._stocked["FBA-US"] and self._rng.random() < 0.1
                else self._rng.choice(WAREHOUSES)
            )
            self._receipt(self._rng.choice(self._stocked[loc]), loc)

    def _receipt(self, sku: str, location: str, opening: bool = False) -> None:
        s = self.catalog.sku(sku)
        uom = s.case_uom if s.packs and self._rng.random() < 0.6 else "EA"
        ordered = self._rng.randint(2, 10) if uom != "EA" else self._rng.randint(12, 120)
        po = _PO(f"PO-{self.token(6)}", sku, location, uom, ordered)
        partial = not opening and ordered > 1 and self._rng.random() < 0.25
        qty = self._rng.randint(1, ordered - 1) if partial else ordered
        self._receive(po, qty)
        if partial:
            self._open_pos.append(po)

    def _receive(self, po: _PO, qty: int) -> None:
        s = self.catalog.sku(po.sku)
        factor = s.packs.get(po.uom, 1)
        # Each receipt's cost varies a little around the SKU's cost, so FIFO and AVCO differ.
        cost = (Decimal(s.unit_cost) * factor * Decimal(self._rng.randint(90, 110)) / 100).quantize(
            Decimal("0.0001")
        )
        po.received += qty
        erp_id = f"RCV-{self.next_id()}"
        m = self._log(
            "receipt", po.sku, po.location, qty, uom=po.uom, unit_cost=cost, reference=po.po, event_id=erp_id
        )
        self.erp.append(m)
        self._receipts.append(_Receipt(erp_id, po.sku, po.location, po.uom, cost, qty * factor))

    def _ev_vendor_return(self) -> None:
        candidates = [
            r
            for r in self._receipts[-200:]
            if r.remaining_base > 0
            and r.location in WAREHOUSES
            and self.on_hand.get((r.sku, r.location), 0) > 0
        ]
        if not candidates:
            return
        r = self._rng.choice(candidates)
        qty = self._rng.randint(1, min(r.remaining_base, self.on_hand[(r.sku, r.location)], 6))
        r.remaining_base -= qty
        factor = self.catalog.sku(r.sku).packs.get(r.uom, 1)
        m = self._log(
            "vendor_return",
            r.sku,
            r.location,
            -qty,
            unit_cost=r.unit_cost / factor,
            reference=r.event_id,
            event_id=f"VRT-{self.next_id()}",
        )
        self.erp.append(m)

    def _ev_customer_return(self) -> None:
        recent = [i for i in range(max(0, len(self._sales) - 300), len(self._sales)) if self._sales[i][1] > 0]
        if not recent:
            return
        i = self._rng.choice(recent)
        sale, left = self._sales[i]
        self._sales[i] = (sale, left - 1)
        self._log("customer_return", sale.sku, sale.location, 1, reference=sale.event_id)

    def _ev_transfer(self) -> None:
        src = self._rng.choice(WAREHOUSES)
        dst = self._rng.choice((*STORES, "FBA-US"))
        sku = self._pick_stocked(src)
        if sku and sku in self._stocked[dst]:
            qty = self._rng.randint(1, min(self.on_hand[(sku, src)], 24))
            self._transfer(sku, src, dst, qty, transit=timedelta(hours=self._rng.randint(2, 12)))

    def _transfer(self, sku: str, src: str, dst: str, qty: int, transit: timedelta) -> None:
        tid = f"TR-{self.next_id()}"
        self._log("transfer_out", sku, src, -qty, reference=tid)
        self.in_transit[tid] = _Transfer(tid, sku, src, dst, qty, self.now + transit)
        if dst == "FBA-US":
            self.amazon_fba[f"{sku}-FBA"]["inbound_shipped"] += qty

    def _ev_adjustment(self) -> None:
        loc = self._rng.choice((*WAREHOUSES, *STORES))
        sku = self._rng.choice(self._stocked[loc])
        delta = self._rng.choice((-2, -1, 1, 2))
        if self.on_hand.get((sku, loc), 0) + delta >= 0:
            self._log("adjustment", sku, loc, delta, reference=f"ADJ-{self.token(6)}")

    def _ev_damage(self) -> None:
        loc = self._rng.choice((*WAREHOUSES, *STORES))
        sku = self._pick_stocked(loc)
        if sku:
            self._log("damage", sku, loc, -1, reference=f"DMG-{self.token(6)}")

    def _ev_count(self) -> None:
        loc = self._rng.choice((*WAREHOUSES, *STORES))
        sku = self._rng.choice(self._stocked[loc])
        counted = max(0, self.on_hand.get((sku, loc), 0) + self._rng.choice((-2, -1, 0, 0, 1)))
        self._log("physical_count", sku, loc, counted, reference=f"CC-{self.token(6)}")

    def _process_due(self) -> None:
        due = [o for o in self.pending_orders if o.ship_at <= self.now]
        for o in due:
            self.pending_orders.remove(o)
            ship = min(o.quantity, self.on_hand.get((o.sku, o.location), 0))
            if ship > 0:
                m = self._log("sale", o.sku, o.location, -ship, reference=o.order_id)
                self._sales.append((m, ship))
            # Shipped, or cancelled for want of stock: either way the order no longer holds units.
            if o.channel == "shopify":
                lvl = self.shopify_levels[(o.listing.channel_sku, o.listing.channel_location)]
                lvl["committed"] -= o.quantity
                lvl["updated_at"] = self.now
        for tid, tr in list(self.in_transit.items()):
            if tr.arrive_at <= self.now:
                del self.in_transit[tid]
                if tr.destination == "FBA-US":
                    self.amazon_fba[f"{tr.sku}-FBA"]["inbound_shipped"] -= tr.quantity
                self._log("transfer_in", tr.sku, tr.destination, tr.quantity, reference=tid)

    def _maybe_hand_edits(self) -> None:
        for ch in CHANNELS:
            plan = self.faults[ch]
            if plan.hand_edit_rate and self.fault_rng[ch].random() < plan.hand_edit_rate:
                lst = self.fault_rng[ch].choice(self.catalog.listings_for(ch))
                level = self.channel_level(lst)
                self._set_channel_level(lst, max(0, level + self.fault_rng[ch].choice((-3, -1, 2, 5))))

    def cas_race(self, lst: Listing) -> None:
        """A customer buys between the client's read and its write (F-CAS)."""
        with self.lock:
            self._ev_shopify_sale(lst)


class ConvergenceProbe:
    """Event-to-converged latency measured from outside the platform, on the simulators' truth.

    Every on-hand change is stamped with the wall clock; a sampler thread checks the changed keys every
    `interval` seconds and, once every publishing listing of a key shows what its policy says of the
    master (`World.published_in_sync`), records how long each of that key's changes waited. Keys listed
    in `exclude` (e.g. the SKUs a fault plan reports in the wrong unit) are not measured.

        probe = ConvergenceProbe(world).start()
        ...   # live traffic and sync cycles
        probe.stop(); probe.latencies, probe.pending_count()
    """

    def __init__(self, world: World, interval: float = 0.5, exclude: set[str] | frozenset[str] = frozenset()):
        self.world, self.interval, self.exclude = world, interval, set(exclude)
        self.samples: list[tuple[float, float]] = []  # (when the change happened, monotonic; its latency)
        self._pending: dict[tuple[str, str], list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convergence-probe", daemon=True)

    def _observe(self, key: tuple[str, str]) -> None:
        if key[0] not in self.exclude and key in self.world._published_by_key:
            self._pending.setdefault(key, []).append(time.monotonic())

    def start(self) -> ConvergenceProbe:
        with self.world.lock:
            self.world.observers.append(self._observe)
        self._thread.start()
        return self

    def sample(self) -> None:
        with self.world.lock:
            now = time.monotonic()
            for key in [k for k in self._pending if self.world.published_in_sync(k)]:
                self.samples += [(t, now - t) for t in self._pending.pop(key)]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self.world.lock:
            if self._observe in self.world.observers:
                self.world.observers.remove(self._observe)
        self.sample()

    @property
    def latencies(self) -> list[float]:
        """Seconds from each converged change to every channel showing it."""
        return [latency for _, latency in self.samples]

    def pending_count(self, since: float | None = None) -> int:
        """Changes not converged yet (censored: their latency is at least the time since they happened);
        with `since` (monotonic), only those that happened after it."""
        return sum(1 for v in self._pending.values() for t in v if since is None or t >= since)


def _shiphero_reason(mtype: str, reference: str, erp_id: str | None) -> str:
    return {
        "receipt": f"PO {reference} received ({erp_id})",
        "vendor_return": f"Returned to vendor ({erp_id}) for receipt {reference}",
        "sale": f"Order {reference} shipped",
        "customer_return": f"Return for {reference}",
        "transfer_out": f"Transfer {reference} shipped",
        "transfer_in": f"Transfer {reference} received",
        "adjustment": f"Manual adjustment {reference}",
        "damage": f"Damaged {reference}",
        "physical_count": f"Cycle count {reference}",
    }[mtype]
