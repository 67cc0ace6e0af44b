"""The benchmark's retailer: deterministic histories of any size, written straight into the sources.

Owns the generated retailer (SKUs, locations, units, a movement history valid for valuation), the
small batch of late events the incremental cycle appends, and the simulated trading day the
oversell comparison runs on. Everything is a pure function of (shape, seed): the same arguments give
the same rows, byte for byte, whatever the chunking. Nothing here touches a database except
`copy_movements`, which streams rows into `raw.file_movements` with COPY as the loader role.

A SKU's history (DESIGN §5 and §7): opening receipts at the warehouses, then sales (mostly at
stores), receipts with costs in eaches or case packs (CS6/CS12/CS24, plus a SKU-specific PK3 on one
SKU in ten), transfer pairs sharing a reference (a few received "before" they were sent, as skewed
clocks report them), customer returns referencing an earlier sale, vendor returns referencing a
receipt, adjustments with and without cost, damage and physical counts. Sales are generated against
the generator's own stock, and one stock-out in five is sold anyway, so some positions go negative.
"""

from __future__ import annotations

import csv
import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestration.lib.progress import progress

SOURCE = "erp"
CURRENCY = "USD"
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)  # end of every generated history: fixed, so a seed reproduces
GLOBAL_PACKS = {"CS6": 6, "CS12": 12, "CS24": 24}
SKU_PACK = ("PK3", 3)  # a SKU-specific unit on one SKU in ten
MOVEMENTS_PER_SKU = 1000  # when only --movements is given: a retailer whose SKUs move ~1,000 times a year
DEFAULT_LOCATIONS = 20
DEFAULT_DAYS = 365
# sku × location × day rate of the default shape, used when the size is given as skus/locations/days
RATE = MOVEMENTS_PER_SKU / (DEFAULT_LOCATIONS * DEFAULT_DAYS)
COLUMNS = ("event_id", "occurred_at", "sku", "location", "movement_type", "quantity", "uom", "unit_cost",
           "currency", "reference")

# (movement type, cumulative probability) of the events after the opening receipts
MIX = (("sale", 0.62), ("receipt", 0.70), ("transfer", 0.77), ("customer_return", 0.81), ("vendor_return", 0.82),
       ("adjustment", 0.88), ("damage", 0.92), ("physical_count", 1.0))


@dataclass(frozen=True)
class Shape:
    """The size of the generated retailer; `movements` is exact (rows in raw.file_movements)."""

    skus: int
    locations: int
    days: int
    movements: int
    seed: int = 42

    @classmethod
    def build(cls, movements: int | None = None, skus: int | None = None, locations: int | None = None,
              days: int | None = None, seed: int = 42) -> Shape:
        locations = locations or DEFAULT_LOCATIONS
        days = days or DEFAULT_DAYS
        if movements is None:
            skus = skus or 1000
            movements = max(1, round(skus * locations * days * RATE))
        skus = skus or max(1, round(movements / MOVEMENTS_PER_SKU))
        if locations < 2:
            raise ValueError("the benchmark retailer needs at least 2 locations (a warehouse and a store)")
        if movements < skus * (locations // 5 + 1):
            raise ValueError(f"{movements} movements are too few for {skus} SKUs at {locations} locations "
                             "(each SKU opens with a receipt per warehouse)")
        return cls(skus, locations, days, movements, seed)

    @property
    def warehouses(self) -> int:
        return max(1, self.locations // 5)

    def location(self, i: int) -> str:
        return f"WH-{i + 1:02d}" if i < self.warehouses else f"STORE-{i - self.warehouses + 1:03d}"

    def sku(self, i: int) -> str:
        return f"SKU-{i + 1:07d}"

    def quota(self, i: int) -> int:
        """Rows of SKU i: the movements split evenly, the remainder to the first SKUs."""
        per, extra = divmod(self.movements, self.skus)
        return per + (1 if i < extra else 0)

    @property
    def start(self) -> datetime:
        return ANCHOR - timedelta(days=self.days)


# ------------------------------------------------------------------------------------------------
# Reference data
# ------------------------------------------------------------------------------------------------


def reference_rows(shape: Shape) -> dict[str, list[dict]]:
    """Canonical rows for raw.file_skus, file_locations and file_uom_conversions."""
    skus = [{"sku": shape.sku(i), "base_uom": "EA", "description": f"bench item {i + 1}"} for i in range(shape.skus)]
    locations = [
        {"location": shape.location(i), "kind": "warehouse" if i < shape.warehouses else "store",
         "master_channel": "shiphero" if i < shape.warehouses else "square"}
        for i in range(shape.locations)
    ]
    conversions = [{"sku": "", "uom": uom, "factor_to_base": factor} for uom, factor in GLOBAL_PACKS.items()]
    conversions += [{"sku": shape.sku(i), "uom": SKU_PACK[0], "factor_to_base": SKU_PACK[1]}
                    for i in range(0, shape.skus, 10)]
    return {"skus": skus, "locations": locations, "uom_conversions": conversions}


# ------------------------------------------------------------------------------------------------
# Movement histories
# ------------------------------------------------------------------------------------------------


def _ts(epoch: float) -> str:
    return datetime.fromtimestamp(round(epoch, 3), UTC).isoformat(timespec="milliseconds")


def _cost(value: float) -> str:
    return f"{value:.4f}"


def sku_history(shape: Shape, index: int) -> list[tuple]:
    """The rows of one SKU, (event_id, occurred_at, sku, location, movement_type, quantity, uom,
    unit_cost, currency, reference) as text (None for null), exactly `shape.quota(index)` of them."""
    rng = random.Random(f"bench:{shape.seed}:{index}")
    sku = shape.sku(index)
    quota = shape.quota(index)
    base_cost = rng.randint(50, 20000) / 100
    packs = dict(GLOBAL_PACKS)
    if index % 10 == 0:
        packs[SKU_PACK[0]] = SKU_PACK[1]
    pack_names = list(packs)
    nloc, nwh = shape.locations, shape.warehouses
    locs = [shape.location(i) for i in range(nloc)]
    stock = [0] * nloc
    last_cost = [base_cost] * nloc
    sales: list[tuple[str, int, int]] = []  # (event_id, location index, quantity) — returnable sales
    receipts: list[tuple[str, int]] = []  # (event_id, location index)
    arrivals: list[tuple[float, int, int]] = []  # heap of transfer_in (time, location, quantity) not yet applied
    rows: list[tuple] = []
    t0 = shape.start.timestamp()
    span = shape.days * 86400.0
    t = t0
    n = 0

    def emit(at: float, loc: int, mtype: str, qty, uom: str = "EA", cost: str | None = None, ref: str | None = None) -> str:
        nonlocal n
        n += 1
        eid = f"{sku}-{n:06d}"
        rows.append((eid, _ts(at), sku, locs[loc], mtype, str(qty), uom, cost, CURRENCY if cost else None, ref))
        return eid

    def receipt(at: float, loc: int, opening: bool = False) -> None:
        if opening or rng.random() < 0.5:
            uom = rng.choice(pack_names)
            factor = packs[uom]
            qty = rng.randint(10, 40) if opening else rng.randint(2, 20)
        else:
            uom, factor, qty = "EA", 1, rng.randint(12, 240)
        unit = base_cost * (1 + rng.uniform(-0.08, 0.08))
        eid = emit(at, loc, "receipt", qty, uom, _cost(unit * factor), f"PO-{index + 1}-{n + 1}")
        stock[loc] += qty * factor
        last_cost[loc] = unit
        receipts.append((eid, loc))

    for w in range(min(nwh, quota)):
        receipt(t0, w, opening=True)
    mean_gap = span / max(1, quota - len(rows))
    while len(rows) < quota:
        t = min(t + rng.expovariate(1.0 / mean_gap), t0 + span - 1)
        while arrivals and arrivals[0][0] <= t:
            _, loc, qty = heapq.heappop(arrivals)
            stock[loc] += qty
        r = rng.random()
        kind = next(k for k, p in MIX if r < p)
        left = quota - len(rows)
        if kind == "transfer" and left < 2:
            kind = "sale"
        if kind == "sale":
            loc = rng.randrange(nwh, nloc) if rng.random() < 0.7 else rng.randrange(nwh)
            qty = rng.choice((1, 1, 1, 2, 2, 3))
            if stock[loc] < qty and rng.random() < 0.8:
                receipt(t, loc)  # replenish instead of selling what is not there
                continue
            eid = emit(t, loc, "sale", -qty)
            stock[loc] -= qty
            sales.append((eid, loc, qty))
            if len(sales) > 64:
                del sales[:32]
        elif kind == "receipt":
            receipt(t, rng.randrange(nwh) if rng.random() < 0.8 else rng.randrange(nloc))
        elif kind == "transfer":
            src = rng.randrange(nwh) if rng.random() < 0.85 else rng.randrange(nloc)
            dst = rng.randrange(nloc - 1)
            dst += dst >= src
            qty = max(1, min(max(stock[src], 1), rng.randint(6, 48)))
            ref = f"TR-{index + 1}-{n + 1}"
            emit(t, src, "transfer_out", -qty, ref=ref)
            stock[src] -= qty
            # a few receiving systems' clocks run behind: the receipt is stamped minutes before the send
            arrive = t - rng.uniform(60, 1800) if rng.random() < 0.03 else t + rng.uniform(3600, 172800)
            emit(min(arrive, t0 + span - 1), dst, "transfer_in", qty, ref=ref)
            heapq.heappush(arrivals, (arrive, dst, qty))
        elif kind == "customer_return":
            if not sales:
                continue
            eid, loc, sold = sales.pop(rng.randrange(len(sales)))
            qty = rng.randint(1, sold)
            emit(t, loc, "customer_return", qty, ref=eid)
            stock[loc] += qty
        elif kind == "vendor_return":
            eid, loc = receipts[rng.randrange(len(receipts))]
            qty = max(1, min(stock[loc], rng.randint(1, 12)))
            emit(t, loc, "vendor_return", -qty, ref=eid)
            stock[loc] -= qty
        elif kind == "adjustment":
            loc = rng.randrange(nloc)
            qty = rng.choice((-5, -3, -2, -1, 1, 2, 3, 5))
            cost = _cost(last_cost[loc]) if qty > 0 and rng.random() < 0.3 else None
            emit(t, loc, "adjustment", qty, cost=cost)
            stock[loc] += qty
        elif kind == "damage":
            loc = rng.randrange(nloc)
            qty = rng.randint(1, 2)
            emit(t, loc, "damage", -qty)
            stock[loc] -= qty
        else:  # physical_count: the counted level, usually close to the book
            loc = rng.randrange(nloc)
            counted = max(0, stock[loc] + rng.choice((-2, -1, 0, 0, 0, 0, 1)))
            emit(t, loc, "physical_count", counted)
            stock[loc] = counted
    return rows


def movements(shape: Shape, skus: range | None = None) -> Iterator[tuple]:
    """Every row of the history, SKU after SKU."""
    for i in skus if skus is not None else range(shape.skus):
        yield from sku_history(shape, i)


def write_csv(path: Path, rows: list[tuple]) -> Path:
    """A canonical movements CSV (DESIGN §5), as `inventory-sync import movements` reads it."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    return path


def _copy_line(row: tuple, source: str, batch_id: str) -> str:
    # Generated values never hold tabs, newlines or backslashes, so COPY text needs no escaping.
    return "\t".join([source, *("\\N" if v is None else v for v in row), batch_id]) + "\n"


def _copy_chunks(rows: Iterator[tuple], source: str, batch_id: str, chunk: int) -> Iterator[list[str]]:
    buffer: list[str] = []
    for row in rows:
        buffer.append(_copy_line(row, source, batch_id))
        if len(buffer) >= chunk:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def copy_movements(conn, rows: Iterator[tuple], batch_id: str, source: str = SOURCE, chunk: int = 5000,
                   total: int | None = None) -> int:
    """Stream rows into raw.file_movements with COPY (the caller's connection: the loader role).
    With `total` (the rows expected), a bar on a terminal counts the chunks written (one update per
    chunk, not per row: the bench times this loop)."""
    count = 0
    cols = "source, " + ", ".join(COLUMNS) + ", batch_id"
    chunks = _copy_chunks(rows, source, batch_id, chunk)
    if total is not None:
        chunks = progress(chunks, total=-(-total // chunk), desc=f"movements, {chunk:,} per chunk", unit="chunk")
    with conn.cursor() as cur, cur.copy(f"copy raw.file_movements ({cols}) from stdin") as copy:  # noqa: S608 - constants
        for lines in chunks:
            copy.write("".join(lines))
            count += len(lines)
    return count


# ------------------------------------------------------------------------------------------------
# The incremental batch: new events on top of the history, some of them back-dated
# ------------------------------------------------------------------------------------------------


def late_batch(shape: Shape, events: int = 10_000, backdated_share: float = 0.2, batch: int = 1) -> list[tuple]:
    """`events` new rows after the history (a day's trading), `backdated_share` of them stamped up to
    30 days in the past. SKUs are drawn with a skew (popular SKUs move most), as a day's trading is.
    Each `batch` number gives other events (ids of their own), drawn alike."""
    rng = random.Random(f"bench:{shape.seed}:late" + (f":{batch}" if batch > 1 else ""))
    tag = "late" if batch == 1 else f"late{batch}"
    end = ANCHOR.timestamp()
    rows = []
    for n in range(1, events + 1):
        i = min(shape.skus - 1, int(shape.skus * rng.random() ** 2))
        sku = shape.sku(i)
        loc = shape.location(rng.randrange(shape.locations))
        at = end - rng.uniform(0, 30 * 86400) if rng.random() < backdated_share else end + rng.uniform(0, 86400)
        r = rng.random()
        eid = f"{sku}-{tag}-{n:06d}"
        if r < 0.75:
            row = (eid, _ts(at), sku, loc, "sale", str(-rng.choice((1, 1, 2))), "EA", None, None, None)
        elif r < 0.9:
            row = (eid, _ts(at), sku, loc, "receipt", str(rng.randint(1, 10)), "CS12",
                   _cost(rng.uniform(6, 2400)), CURRENCY, f"PO-{tag}-{n}")
        elif r < 0.95:
            row = (eid, _ts(at), sku, loc, "adjustment", str(rng.choice((-2, -1, 1, 2))), "EA", None, None, None)
        else:
            row = (eid, _ts(at), sku, loc, "damage", "-1", "EA", None, None, None)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# The trading day of the oversell comparison
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayEvent:
    at: float  # seconds since the day opened
    position: int  # which (sku, location)
    channel: str  # 'pos' (the master: sees true stock) or a channel selling on published quantities
    kind: str  # 'sale' or 'receipt'
    quantity: int


def trading_day(seed: int = 42, positions: int = 400, attempts: int = 20_000, hours: float = 12.0) -> tuple[list[int], list[DayEvent]]:
    """Opening stock per position and the day's events: sale attempts from the store POS (the master)
    and two channels that sell on the quantity they were last told (web, marketplace), plus deliveries.
    Demand is skewed (a few positions sell most) and stock is thin, so stale counts can oversell."""
    rng = random.Random(f"bench:{seed}:day")
    opening = [rng.randint(0, 30) for _ in range(positions)]
    events = []
    t = 0.0
    span = hours * 3600
    for _ in range(attempts):
        t += rng.expovariate(attempts / span)
        pos = min(positions - 1, int(positions * rng.random() ** 2))
        if rng.random() < 0.03:
            events.append(DayEvent(t, pos, "pos", "receipt", rng.choice((12, 24, 36))))
            continue
        r = rng.random()
        channel = "pos" if r < 0.5 else "web" if r < 0.8 else "marketplace"
        events.append(DayEvent(t, pos, channel, "sale", 1 if rng.random() < 0.8 else 2))
    return opening, events


@dataclass
class DayOutcome:
    oversells: int
    accepted_sales: int
    latencies: list[float]  # per stock-changing event: seconds until the channels show its effect


def simulate_day(opening: list[int], events: list[DayEvent], interval: float, duration: float) -> DayOutcome:
    """Replay the day with channels updated by sync cycles starting every `interval` seconds (reading
    true stock when they start) and publishing `duration` seconds later. A channel accepts a sale when
    its published quantity (minus its own sales since) covers it; the sale oversells when true stock
    does not. The POS is the master and sells on true stock. `interval == duration` is back-to-back
    (continuous) syncing."""
    truth = list(opening)
    channels = ("web", "marketplace")
    published = {c: list(opening) for c in channels}
    pending: list[tuple[float, list[int]]] = []  # (publish time, snapshot)
    next_start = interval
    oversells = accepted = 0
    latencies = []
    change_times: list[float] = []  # stock-changing events not yet covered by a started cycle

    def advance(now: float) -> None:
        nonlocal next_start
        while True:
            due = pending[0][0] if pending else float("inf")
            if min(due, next_start) > now:
                return
            if next_start <= due:
                pending.append((next_start + duration, list(truth)))
                latencies.extend(next_start + duration - at for at in change_times)
                change_times.clear()
                next_start += interval
            else:
                _, snapshot = pending.pop(0)
                for c in channels:
                    published[c] = list(snapshot)

    for ev in events:
        advance(ev.at)
        p = ev.position
        if ev.kind == "receipt":
            truth[p] += ev.quantity
            change_times.append(ev.at)
            continue
        if ev.channel == "pos":
            if truth[p] < ev.quantity:
                continue  # the master sees the shelf: no sale
            truth[p] -= ev.quantity
        else:
            if published[ev.channel][p] < ev.quantity:
                continue  # shown as out of stock
            published[ev.channel][p] -= ev.quantity
            if truth[p] < ev.quantity:
                oversells += 1
                continue  # accepted, cannot be fulfilled
            truth[p] -= ev.quantity
        accepted += 1
        change_times.append(ev.at)
    if events:
        advance(events[-1].at + interval + duration)
    return DayOutcome(oversells, accepted, latencies)
