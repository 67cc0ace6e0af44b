"""Independent reference model of FIFO and AVCO valuation (DESIGN §7), for differential tests (I-8).

Owns: the executable statement of the valuation rules. It is written from DESIGN §7, not from the SQL,
in plain Python with `Decimal` only (an exact context that raises on any rounding), and is
deliberately simple rather than fast. `value_movements()` takes unified-ledger rows
(`int_movements_unified`: quantities and unit costs already in base units) and returns, for both
methods, one valued row per movement, the open FIFO layers and the cost-of-goods lineage.

Points DESIGN §7 leaves open, decided here (the SQL implements the same decisions):

Order (rule 2)
  Per SKU, across all its locations: `(occurred_at, event_id, source_name)`, text compared by code
  point (SQL: `collate "C"`). A transfer's *pair* is the SKU's first `transfer_out` (in that order)
  with the same `reference`. A `transfer_in` that would sort before its pair's `transfer_out` is
  moved to directly after it (several such moved `transfer_in`s keep their own event_id order).
  `valuation_sequence` numbers the result 1, 2, … per SKU.

References (rules 6, 7, 8)
  Resolved within the SKU by event_id: a `customer_return` to a `sale`, a `vendor_return` to a
  `receipt` (a movement of the same source is preferred, then the earliest in valuation order). A
  reference that is missing, names a movement that is not valued earlier, or a sale with zero
  quantity, counts as unreferenced.

Arithmetic (rule 3)
  Sums and products are exact. The only division is `divide(a, b)`: a / b rounded half away from
  zero to 20 decimal places (`DIVISION_SCALE`). It is used for the AVCO average, for the unit cost of
  a movement whose units carried several different costs (`unit_cost_applied` = total cost ÷ quantity;
  when every unit carried one cost, that cost exactly), for AVCO transfer receipts (below), and
  nowhere else. Balances are running sums of the exact value changes, so opening value +
  changes = closing value holds exactly. When a location's quantity is exactly zero its value is
  exactly zero: FIFO has then no layers and no negative backlog; AVCO's issue that reaches zero takes
  the whole remaining value (the change may differ from −q × average by the rounding residue), and an
  inbound that reaches zero from below books the whole difference as revaluation. Money is never
  rounded to cents here.

Zero quantities
  A movement whose applied quantity is zero (zero-quantity rows, a count equal to book) changes no
  state, has value change and revaluation exactly 0 and `unit_cost_applied` null.

Inbound and issue (rules 4, 5, 9, 10)
  The sign of the applied quantity decides: > 0 is inbound, < 0 is an issue. For a
  `physical_count` the applied quantity is counted − book at that location then (negative book
  included); `counted_quantity_base` keeps the count. Inbound cost per unit: receipt → its unit cost;
  customer_return → rule 6; transfer_in → rule 8; anything else (adjustment, count above book, an
  odd-signed movement) → its own unit cost if present, else the "fallback cost": FIFO the last known
  unit cost, AVCO the current average. A receipt without a cost (the ledger quarantines those) would
  use the fallback cost too. Costs carried on issues are ignored: issues are valued by the method.

Last known unit cost (rules 6, 9, 11)
  FIFO, per SKU and location: the unit cost of the most recent inbound unit valued there (the last
  cost piece of the most recent inbound movement with quantity > 0, including units that settled
  negative stock), 0 if none yet. AVCO's "current average" per SKU and location is the average as last
  set (0 if never set); it survives the position reaching zero or going negative.

Customer returns (rule 6)
  Referenced: the sale's own `unit_cost_applied` under the same method (FIFO: cost ÷ quantity as
  booked at the sale, before any later revaluation; AVCO: the average used by the sale). There is no
  cap on how many units are returned against one sale. The FIFO layer created comes from the return.

Vendor returns (rule 7)
  FIFO takes from the open layers at that location whose source is the referenced receipt (including
  layers transferred in from it), oldest first, then from the oldest layers, then goes negative.

Transfers (rule 8)
  Every `transfer_out` puts what left the sender into its pair's in-transit pool (FIFO: the pieces
  with their costs and source receipts; AVCO: quantity and value). A `transfer_in` takes from its pool
  (FIFO: oldest pieces first; AVCO: the whole pool value if it takes every unit, else quantity ×
  divide(pool value, pool quantity)); units beyond what the pool holds (no pair yet, or more received
  than sent) enter at the receiving location's fallback cost. Units sent beyond the sender's layers
  travel at the provisional cost and the layer they create names the `transfer_out` as its source.
  Transferred FIFO layers join the back of the receiving location's queue (they arrived then), keep
  their source receipt, and have `received_at` = the transfer_in's time. In-transit totals of the
  SKU are reported on every valued row until the pool empties. AVCO's unit cost of a transfer_in
  (what becomes the average when the receiver is at or below zero) is divide(total cost, quantity)
  when anything came from the pool, else the receiving location's average.

Negative stock (rule 11)
  FIFO: units issued beyond the layers are booked at the last known unit cost into a per-location
  backlog (cost line kind `provisional`). Inbound units settle the backlog oldest first; for each
  settled piece a `revaluation` cost line is booked on the inbound movement: issue = the original
  issue, source = the inbound's cost source, quantity, its unit cost, amount = quantity × (unit cost −
  provisional unit cost). The movement's `revaluation_amount` is the sum of these; its
  `stock_value_change` = inbound cost − revaluation. AVCO: exactly rule 11; the revaluation line is
  keyed by the settling movement itself (the whole negative position is revalued; no issue
  attribution), quantity = the negative quantity before it; it is written whenever the quantity before
  was negative or the revaluation is not zero (an inbound at zero whose unit cost had to be rounded
  books that residue as revaluation too).

Cost-of-goods lines
  Every issue has lines: FIFO one per layer consumed (`layer`) and one per provisional piece
  (`provisional`), AVCO one line (`average`, source null) at the average with the issue's value change.
  Revaluation lines as above. Each line is booked on a movement (`booked_*`) and numbered per booking
  movement and method (`line_sequence`).
"""

from __future__ import annotations

import decimal
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

DIVISION_SCALE = 20

# Any rounding outside `divide` is a bug: the context traps it instead of silently rounding at 28 digits.
EXACT = decimal.Context(
    prec=100_000,
    rounding=decimal.ROUND_HALF_UP,
    traps=[
        decimal.InvalidOperation,
        decimal.DivisionByZero,
        decimal.Overflow,
        decimal.Inexact,
        decimal.Rounded,
    ],
)

ZERO = Decimal(0)
METHODS = ("fifo", "avco")


def divide(a: Decimal, b: Decimal) -> Decimal:
    """a / b rounded half away from zero to DIVISION_SCALE decimal places, computed on exact integers."""
    an, ad = a.as_integer_ratio()
    bn, bd = b.as_integer_ratio()
    num = an * bd * 10**DIVISION_SCALE
    den = ad * bn
    negative = (num < 0) != (den < 0)
    q, r = divmod(abs(num), abs(den))
    if 2 * r >= abs(den):
        q += 1
    return Decimal(f"{'-' if negative and q else ''}{q}E-{DIVISION_SCALE}")


@dataclass(frozen=True)
class Movement:
    movement_id: str
    source_name: str
    event_id: str
    occurred_at: datetime
    sku: str
    location: str
    movement_type: str
    quantity_base: Decimal
    unit_cost_base: Decimal | None = None
    reference: str | None = None


@dataclass
class ValuedMovement:
    movement_id: str
    sku: str
    location: str
    method: str
    valuation_sequence: int
    quantity_base: Decimal
    counted_quantity_base: Decimal | None
    unit_cost_applied: Decimal | None
    stock_value_change: Decimal
    revaluation_amount: Decimal
    balance_quantity: Decimal
    balance_value: Decimal
    average_unit_cost: Decimal | None
    in_transit_quantity: Decimal
    in_transit_value: Decimal


@dataclass
class CostLine:
    booked_movement_id: str
    method: str
    line_sequence: int
    cost_kind: str  # layer | provisional | average | revaluation
    issue_movement_id: str
    source_movement_id: str | None
    quantity_base: Decimal
    unit_cost_base: Decimal
    cost_amount: Decimal
    provisional_unit_cost_base: Decimal | None = None


@dataclass
class OpenLayer:
    sku: str
    location: str
    layer_sequence: int
    source_movement_id: str
    received_movement_id: str
    quantity_remaining_base: Decimal
    unit_cost_base: Decimal


@dataclass
class Valuation:
    movements: list[ValuedMovement] = field(default_factory=list)
    cost_lines: list[CostLine] = field(default_factory=list)
    layers: list[OpenLayer] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# Order and references
# ------------------------------------------------------------------------------------------------


def _base_key(m: Movement) -> tuple:
    return (m.occurred_at, m.event_id, m.source_name)


def order_sku(movements: list[Movement]) -> list[Movement]:
    """One SKU's movements in valuation order (rule 2, with the transfer_in exception)."""
    first_out: dict[str, Movement] = {}
    for m in sorted(movements, key=_base_key):
        if m.movement_type == "transfer_out" and m.reference is not None:
            first_out.setdefault(m.reference, m)

    def key(m: Movement) -> tuple:
        out = (
            first_out.get(m.reference)
            if m.movement_type == "transfer_in" and m.reference is not None
            else None
        )
        if out is not None and _base_key(m) < _base_key(out):
            return (*_base_key(out), 1, m.event_id, m.source_name)
        return (*_base_key(m), 0, "", "")

    return sorted(movements, key=key)


def _resolve(m: Movement, ordered: list[Movement], position: dict[str, int], wanted_type: str) -> int | None:
    """Position of the movement `m.reference` names (same source preferred, then earliest), if earlier."""
    if m.reference is None:
        return None
    candidates = [c for c in ordered if c.movement_type == wanted_type and c.event_id == m.reference]
    if not candidates:
        return None
    best = min(candidates, key=lambda c: (c.source_name != m.source_name, position[c.movement_id]))
    return position[best.movement_id] if position[best.movement_id] < position[m.movement_id] else None


# ------------------------------------------------------------------------------------------------
# State
# ------------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    sequence: int
    quantity: Decimal
    unit_cost: Decimal
    source: int  # position of the movement the cost comes from
    received: int  # position of the movement that brought it to this location


@dataclass
class _Provisional:
    quantity: Decimal
    unit_cost: Decimal
    issue: int


@dataclass
class _Piece:
    """Units with one cost, moving in or out: `source` is where the cost came from."""

    quantity: Decimal
    unit_cost: Decimal
    source: int


def _unit_cost_of(pieces: list[_Piece], quantity: Decimal) -> Decimal:
    costs = {p.unit_cost for p in pieces}
    if len(costs) == 1:
        return next(iter(costs))
    return divide(sum((p.quantity * p.unit_cost for p in pieces), ZERO), quantity)


class _Fifo:
    def __init__(self) -> None:
        self.layers: dict[str, list[_Layer]] = defaultdict(list)
        self.backlog: dict[str, list[_Provisional]] = defaultdict(list)
        self.last_cost: dict[str, Decimal] = {}
        self.pools: dict[int, list[_Piece]] = defaultdict(list)
        self.next_layer = 0

    def quantity(self, loc: str) -> Decimal:
        return sum((x.quantity for x in self.layers[loc]), ZERO) - sum(
            (p.quantity for p in self.backlog[loc]), ZERO
        )

    def value(self, loc: str) -> Decimal:
        return sum((x.quantity * x.unit_cost for x in self.layers[loc]), ZERO) - sum(
            (p.quantity * p.unit_cost for p in self.backlog[loc]), ZERO
        )

    def fallback(self, loc: str) -> Decimal:
        return self.last_cost.get(loc, ZERO)

    def issue(
        self, loc: str, quantity: Decimal, me: int, prefer_source: int | None
    ) -> tuple[list[_Piece], list]:
        """Take `quantity` (> 0) out; returns the pieces (with cost source) and cost lines."""
        pieces: list[_Piece] = []
        lines: list[tuple] = []
        remaining = quantity
        queue = self.layers[loc]
        if prefer_source is not None:
            order = [x for x in queue if x.source == prefer_source] + [
                x for x in queue if x.source != prefer_source
            ]
        else:
            order = list(queue)
        for layer in order:
            if remaining == 0:
                break
            take = min(remaining, layer.quantity)
            layer.quantity -= take
            remaining -= take
            pieces.append(_Piece(take, layer.unit_cost, layer.source))
            lines.append(("layer", layer.source, take, layer.unit_cost, take * layer.unit_cost, None))
        self.layers[loc] = [x for x in queue if x.quantity != 0]
        if remaining > 0:
            cost = self.fallback(loc)
            self.backlog[loc].append(_Provisional(remaining, cost, me))
            pieces.append(_Piece(remaining, cost, me))
            lines.append(("provisional", None, remaining, cost, remaining * cost, None))
        return pieces, lines

    def receive(self, loc: str, pieces: list[_Piece], me: int) -> tuple[Decimal, list]:
        """Bring pieces in: settle negative stock first, then add layers; returns revaluation and lines."""
        revaluation = ZERO
        lines: list[tuple] = []
        backlog = self.backlog[loc]
        for piece in pieces:
            left = piece.quantity
            while left > 0 and backlog:
                head = backlog[0]
                settle = min(left, head.quantity)
                amount = settle * (piece.unit_cost - head.unit_cost)
                revaluation += amount
                lines.append(
                    ("revaluation", piece.source, settle, piece.unit_cost, amount, head.unit_cost, head.issue)
                )
                head.quantity -= settle
                left -= settle
                if head.quantity == 0:
                    backlog.pop(0)
            if left > 0:
                self.next_layer += 1
                self.layers[loc].append(_Layer(self.next_layer, left, piece.unit_cost, piece.source, me))
            self.last_cost[loc] = piece.unit_cost
        return revaluation, lines


class _Avco:
    def __init__(self) -> None:
        self.qty: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.value: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.average: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.pool_qty: dict[int, Decimal] = defaultdict(lambda: ZERO)
        self.pool_value: dict[int, Decimal] = defaultdict(lambda: ZERO)

    def issue(self, loc: str, quantity: Decimal) -> Decimal:
        """Take `quantity` (> 0) out at the average; returns the (positive) value that left."""
        avg = self.average[loc]
        new_qty = self.qty[loc] - quantity
        out = self.value[loc] if new_qty == 0 else quantity * avg
        self.qty[loc] = new_qty
        self.value[loc] -= out
        return out

    def receive(
        self, loc: str, quantity: Decimal, cost: Decimal, unit_cost: Decimal
    ) -> tuple[Decimal, Decimal]:
        """Bring in `quantity` (> 0) costing `cost` in total; returns (stock value change, revaluation)."""
        before_qty, before_value = self.qty[loc], self.value[loc]
        new_qty = before_qty + quantity
        if before_qty > 0:
            new_value = before_value + cost
            self.average[loc] = divide(new_value, new_qty)
        else:
            self.average[loc] = unit_cost
            new_value = new_qty * unit_cost
        self.qty[loc], self.value[loc] = new_qty, new_value
        change = new_value - before_value
        return change, cost - change


# ------------------------------------------------------------------------------------------------
# The pass
# ------------------------------------------------------------------------------------------------


def value_movements(movements: list[Movement]) -> Valuation:
    """Value every SKU's movements with both methods; see the module docstring for every rule."""
    result = Valuation()
    by_sku: dict[str, list[Movement]] = defaultdict(list)
    for m in movements:
        by_sku[m.sku].append(m)
    with decimal.localcontext(EXACT):
        for sku in sorted(by_sku):
            _value_sku(order_sku(by_sku[sku]), result)
    return result


def _value_sku(ordered: list[Movement], result: Valuation) -> None:
    position = {m.movement_id: i for i, m in enumerate(ordered)}
    first_out: dict[str, int] = {}
    for i, m in enumerate(ordered):
        if m.movement_type == "transfer_out" and m.reference is not None:
            first_out.setdefault(m.reference, i)

    fifo, avco = _Fifo(), _Avco()
    qty: dict[str, Decimal] = defaultdict(lambda: ZERO)
    applied_cost: dict[tuple[str, int], Decimal | None] = {}
    transit_qty = ZERO
    transit_value = {"fifo": ZERO, "avco": ZERO}

    for i, m in enumerate(ordered):
        loc = m.location
        counted = m.quantity_base if m.movement_type == "physical_count" else None
        delta = m.quantity_base - qty[loc] if counted is not None else m.quantity_base
        pool = first_out.get(m.reference) if m.movement_type in ("transfer_out", "transfer_in") else None
        if m.reference is None:
            pool = None
        out: dict[str, dict] = {}
        lines: dict[str, list] = {"fifo": [], "avco": []}

        if delta == 0:
            for method in METHODS:
                out[method] = dict(unit=None, change=ZERO, reval=ZERO)
        elif delta < 0:
            q = -delta
            prefer = None
            if m.movement_type == "vendor_return":
                prefer = _resolve(m, ordered, position, "receipt")
            pieces, fifo_lines = fifo.issue(loc, q, i, prefer)
            fifo_cost = sum((p.quantity * p.unit_cost for p in pieces), ZERO)
            out["fifo"] = dict(unit=_unit_cost_of(pieces, q), change=-fifo_cost, reval=ZERO)
            lines["fifo"] = [(kind, i, src, lq, uc, amt, prov) for kind, src, lq, uc, amt, prov in fifo_lines]
            avg = avco.average[loc]
            avco_cost = avco.issue(loc, q)
            out["avco"] = dict(unit=avg, change=-avco_cost, reval=ZERO)
            lines["avco"] = [("average", i, None, q, avg, avco_cost, None)]
            if m.movement_type == "transfer_out" and pool is not None:
                fifo.pools[pool].extend(pieces)
                avco.pool_qty[pool] += q
                avco.pool_value[pool] += avco_cost
                transit_qty += q
                transit_value["fifo"] += fifo_cost
                transit_value["avco"] += avco_cost
        else:
            q = delta
            # FIFO inbound pieces and AVCO (total cost, unit cost) by movement type.
            if m.movement_type == "receipt" and m.unit_cost_base is not None:
                fifo_pieces = [_Piece(q, m.unit_cost_base, i)]
                avco_cost, avco_unit = q * m.unit_cost_base, m.unit_cost_base
            elif m.movement_type == "customer_return":
                sale = _resolve(m, ordered, position, "sale")
                fifo_unit = applied_cost.get(("fifo", sale)) if sale is not None else None
                avco_unit = applied_cost.get(("avco", sale)) if sale is not None else None
                if fifo_unit is None:
                    fifo_unit = fifo.fallback(loc)
                if avco_unit is None:
                    avco_unit = avco.average[loc]
                fifo_pieces = [_Piece(q, fifo_unit, i)]
                avco_cost = q * avco_unit
            elif m.movement_type == "transfer_in":
                fifo_pieces, left = [], q
                if pool is not None:
                    pieces = fifo.pools[pool]
                    while left > 0 and pieces:
                        take = min(left, pieces[0].quantity)
                        fifo_pieces.append(_Piece(take, pieces[0].unit_cost, pieces[0].source))
                        pieces[0].quantity -= take
                        left -= take
                        transit_value["fifo"] -= take * pieces[0].unit_cost
                        if pieces[0].quantity == 0:
                            pieces.pop(0)
                if left > 0:
                    fifo_pieces.append(_Piece(left, fifo.fallback(loc), i))
                taken = min(q, avco.pool_qty[pool]) if pool is not None else ZERO
                if taken == 0:
                    taken_value = ZERO
                elif taken == avco.pool_qty[pool]:
                    taken_value = avco.pool_value[pool]
                else:
                    taken_value = taken * divide(avco.pool_value[pool], avco.pool_qty[pool])
                if pool is not None:
                    avco.pool_qty[pool] -= taken
                    avco.pool_value[pool] -= taken_value
                transit_qty -= taken
                transit_value["avco"] -= taken_value
                extra = q - taken
                avco_cost = taken_value + extra * avco.average[loc]
                avco_unit = divide(avco_cost, q) if taken > 0 else avco.average[loc]
            else:
                cost = m.unit_cost_base
                fifo_pieces = [_Piece(q, cost if cost is not None else fifo.fallback(loc), i)]
                avco_unit = cost if cost is not None else avco.average[loc]
                avco_cost = q * avco_unit
            fifo_cost = sum((p.quantity * p.unit_cost for p in fifo_pieces), ZERO)
            fifo_reval, fifo_lines = fifo.receive(loc, fifo_pieces, i)
            out["fifo"] = dict(
                unit=_unit_cost_of(fifo_pieces, q), change=fifo_cost - fifo_reval, reval=fifo_reval
            )
            lines["fifo"] = [
                ("revaluation", issue, src, lq, uc, amt, prov)
                for _, src, lq, uc, amt, prov, issue in fifo_lines
            ]
            before_qty = avco.qty[loc]
            change, reval = avco.receive(loc, q, avco_cost, avco_unit)
            out["avco"] = dict(unit=avco_unit, change=change, reval=reval)
            if before_qty < 0 or reval != 0:
                lines["avco"] = [("revaluation", i, i, max(-before_qty, ZERO), avco_unit, reval, None)]

        qty[loc] += delta
        for method in METHODS:
            applied_cost[(method, i)] = out[method]["unit"] if m.movement_type == "sale" else None
            balance_value = fifo.value(loc) if method == "fifo" else avco.value[loc]
            result.movements.append(
                ValuedMovement(
                    movement_id=m.movement_id,
                    sku=m.sku,
                    location=loc,
                    method=method,
                    valuation_sequence=i + 1,
                    quantity_base=delta,
                    counted_quantity_base=counted,
                    unit_cost_applied=out[method]["unit"],
                    stock_value_change=out[method]["change"],
                    revaluation_amount=out[method]["reval"],
                    balance_quantity=qty[loc],
                    balance_value=balance_value,
                    average_unit_cost=avco.average[loc] if method == "avco" else None,
                    in_transit_quantity=transit_qty,
                    in_transit_value=transit_value[method],
                )
            )
            for n, (kind, issue, src, lq, uc, amt, prov) in enumerate(lines[method], start=1):
                result.cost_lines.append(
                    CostLine(
                        booked_movement_id=m.movement_id,
                        method=method,
                        line_sequence=n,
                        cost_kind=kind,
                        issue_movement_id=ordered[issue].movement_id,
                        source_movement_id=ordered[src].movement_id if src is not None else None,
                        quantity_base=lq,
                        unit_cost_base=uc,
                        cost_amount=amt,
                        provisional_unit_cost_base=prov,
                    )
                )
        assert fifo.quantity(loc) == qty[loc] == avco.qty[loc], "FIFO/AVCO quantity drifted from the ledger"

    for loc in sorted(fifo.layers):
        for layer in fifo.layers[loc]:
            result.layers.append(
                OpenLayer(
                    sku=ordered[0].sku,
                    location=loc,
                    layer_sequence=layer.sequence,
                    source_movement_id=ordered[layer.source].movement_id,
                    received_movement_id=ordered[layer.received].movement_id,
                    quantity_remaining_base=layer.quantity,
                    unit_cost_base=layer.unit_cost,
                )
            )
