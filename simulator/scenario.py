"""Reference data of a simulated retailer: SKUs, units, locations, channel listings, policies, kits.

`build_catalog(Scenario)` is a pure function of the scenario (seeded `random.Random`), so the same
seed always yields the same SKUs and the same channel identifiers.  The world (`simulator.world`)
owns everything that changes over time; this module owns only what is fixed.
"""

from __future__ import annotations

import base64
import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Fixed default anchor so that a seed reproduces byte-identical timestamps; pass `anchor` to
# line the history up with the wall clock instead (the CLI does, for hand testing).
DEFAULT_ANCHOR = datetime(2026, 1, 12, tzinfo=UTC)

CHANNELS = ("shopify", "square", "amazon", "shiphero", "toast")
FILE_SOURCES = ("touchbistro", "sumup")
PACK_FACTORS = {"CS6": 6, "CS12": 12, "CS24": 24}
AMAZON_MARKETPLACE = "ATVPDKIKX0DER"
AMAZON_SELLER_ID = "A2SIMSELLER001"
AMAZON_MFN_CHANNEL = "DEFAULT"


@dataclass(frozen=True)
class Scenario:
    """Knobs of the generated retailer.  `skus` counts sellable SKUs (kits come on top)."""

    seed: int = 42
    skus: int = 2000
    days: int = 7
    anchor: datetime = DEFAULT_ANCHOR  # end of the generated history = the world's "now"
    events_per_sku_day: float = 0.6
    kit_share: float = 0.02
    # How stores got their opening stock: "transfer" (shipped from the warehouses, the WMS logs every
    # one) or "receipt" (delivered by vendors straight to the store, in the ERP and the store's POS).
    store_opening: str = "transfer"
    # The retailer's previous tool: every N minutes of history it set the publishing channels (Shopify,
    # Amazon MFN) to the policy level of the master's on-hand, ignoring open orders. None: no tool,
    # the channels drift from the opening for the whole history.
    legacy_sync_minutes: int | None = None

    def __post_init__(self) -> None:
        if self.store_opening not in ("transfer", "receipt"):
            raise ValueError(f"store_opening must be 'transfer' or 'receipt', not {self.store_opening!r}")
        if self.legacy_sync_minutes is not None and self.legacy_sync_minutes <= 0:
            raise ValueError("legacy_sync_minutes must be a positive number of minutes or None")


@dataclass(frozen=True)
class Sku:
    sku: str
    description: str
    base_uom: str = "EA"
    packs: dict[str, int] = field(default_factory=dict)  # uom -> factor_to_base
    unit_cost: str = "0"  # base cost per EA, decimal string
    is_kit: bool = False

    @property
    def case_uom(self) -> str | None:
        """The largest pack: the unit a channel would confuse with eaches."""
        return max(self.packs, key=self.packs.__getitem__) if self.packs else None


@dataclass(frozen=True)
class Location:
    location: str
    kind: str  # warehouse | store | marketplace
    master_channel: str


@dataclass(frozen=True)
class Listing:
    channel: str
    channel_sku: str
    channel_location: str
    sku: str
    location: str


@dataclass(frozen=True)
class Policy:
    channel: str
    safety_buffer: int = 0
    percentage: int = 100
    maximum: int | None = None
    minimum: int | None = None
    conflict_rule: str = "master_wins"
    # How long the platform may take a shortfall the channel caused itself for its own sale in flight
    # (None: the platform's default). Amazon's orders reach the simulated warehouse only when they ship,
    # hours later, so the demo retailer re-publishes the master's figure after half a minute.
    in_flight_seconds: int | None = None


LOCATIONS = (
    Location("WH-EAST", "warehouse", "shiphero"),
    Location("WH-WEST", "warehouse", "shiphero"),
    Location("STORE-01", "store", "square"),
    Location("STORE-02", "store", "square"),
    Location("STORE-03", "store", "toast"),
    Location("FBA-US", "marketplace", "amazon"),
    # Stores whose POS has no stock API: their movements arrive only as CSV exports.
    Location("STORE-04", "store", "touchbistro"),
    Location("STORE-05", "store", "sumup"),
)
WAREHOUSES = ("WH-EAST", "WH-WEST")
STORES = ("STORE-01", "STORE-02", "STORE-03", "STORE-04", "STORE-05")

POLICIES = (
    Policy("shopify", safety_buffer=2),
    Policy("amazon", safety_buffer=3, percentage=80, maximum=100, in_flight_seconds=30),
    Policy("square"),
    Policy("toast"),
    Policy("shiphero"),
    Policy("touchbistro"),
    Policy("sumup", conflict_rule="manual"),
)

_NOUNS = (
    "Mug",
    "Tee",
    "Beans",
    "Candle",
    "Notebook",
    "Bottle",
    "Socks",
    "Cap",
    "Tote",
    "Soap",
    "Jam",
    "Tea",
    "Granola",
    "Pen",
    "Scarf",
    "Bowl",
    "Apron",
    "Honey",
    "Brush",
    "Card",
)
_ADJS = ("Red", "Blue", "Oak", "Linen", "Organic", "Classic", "Mini", "Large", "Vintage", "Smoked")


@dataclass
class Catalog:
    """Everything fixed about the retailer, including every channel's own identifiers."""

    skus: list[Sku]
    locations: tuple[Location, ...]
    listings: list[Listing]
    policies: tuple[Policy, ...]
    kit_components: list[tuple[str, str, int]]  # (kit_sku, component_sku, quantity_per_kit)
    shopify_locations: dict[str, str]  # location -> gid
    square_locations: dict[str, str]  # location -> Square location_id
    shiphero_warehouses: dict[str, str]  # location -> ShipHero warehouse_id
    toast_restaurant: str  # restaurant GUID of STORE-03
    toast_multi_location: dict[str, str]  # toast item guid -> multiLocationId
    amazon_asins: dict[str, str]  # sku -> ASIN

    def sku(self, sku: str) -> Sku:
        return self._by_sku[sku]

    def __post_init__(self) -> None:
        self._by_sku = {s.sku: s for s in self.skus}
        self._by_channel: dict[str, list[Listing]] = {}
        for lst in self.listings:
            self._by_channel.setdefault(lst.channel, []).append(lst)

    def listings_for(self, channel: str) -> list[Listing]:
        return self._by_channel.get(channel, [])


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_catalog(sc: Scenario) -> Catalog:
    rng = random.Random(f"catalog:{sc.seed}")
    skus: list[Sku] = []
    for i in range(sc.skus):
        packs = {}
        if rng.random() < 0.35:
            for uom in rng.sample(sorted(PACK_FACTORS), rng.randint(1, 2)):
                packs[uom] = PACK_FACTORS[uom]
        cents = rng.randint(80, 4000)
        skus.append(
            Sku(
                sku=f"SKU-{i + 1:05d}",
                description=f"{rng.choice(_ADJS)} {rng.choice(_NOUNS)} {i + 1}",
                packs=packs,
                unit_cost=f"{cents // 100}.{cents % 100:02d}",
            )
        )
    kit_components: list[tuple[str, str, int]] = []
    n_kits = max(1, int(sc.skus * sc.kit_share)) if sc.skus >= 4 else 0
    for k in range(n_kits):
        kit = f"KIT-{k + 1:04d}"
        parts = rng.sample(skus[: sc.skus], 2)
        skus.append(Sku(kit, f"Gift set {k + 1}", is_kit=True))
        kit_components.extend((kit, p.sku, rng.randint(1, 2)) for p in parts)

    shopify_locations = {"WH-EAST": "gid://shopify/Location/70001", "WH-WEST": "gid://shopify/Location/70002"}
    square_locations = {loc: "L" + _token(rng, 12) for loc in ("STORE-01", "STORE-02")}
    shiphero_warehouses = {
        loc: base64.b64encode(f"Warehouse:{11790 + n}".encode()).decode() for n, loc in enumerate(WAREHOUSES)
    }
    toast_restaurant = _uuid(rng)
    toast_multi_location: dict[str, str] = {}
    amazon_asins: dict[str, str] = {}

    listings: list[Listing] = []
    for n, s in enumerate(skus):
        item_gid = f"gid://shopify/InventoryItem/{40000000 + n}"
        for loc, gid in shopify_locations.items():
            listings.append(Listing("shopify", item_gid, gid, s.sku, loc))
        if s.is_kit:
            continue  # kits are sold online only and have no stock of their own
        for loc, wid in shiphero_warehouses.items():
            listings.append(Listing("shiphero", s.sku, wid, s.sku, loc))
        variation = _token(rng, 24)
        for loc, lid in square_locations.items():
            listings.append(Listing("square", variation, lid, s.sku, loc))
        if rng.random() < 0.5:
            guid = _uuid(rng)
            toast_multi_location[guid] = str(400000000000000000 + rng.getrandbits(40))
            listings.append(Listing("toast", guid, toast_restaurant, s.sku, "STORE-03"))
        if rng.random() < 0.6:
            amazon_asins[s.sku] = "B0" + _token(rng, 8)
            listings.append(Listing("amazon", s.sku, AMAZON_MFN_CHANNEL, s.sku, "WH-EAST"))
            listings.append(Listing("amazon", f"{s.sku}-FBA", AMAZON_MARKETPLACE, s.sku, "FBA-US"))
        for loc, src in (("STORE-04", "touchbistro"), ("STORE-05", "sumup")):
            listings.append(Listing(src, s.sku, loc, s.sku, loc))

    return Catalog(
        skus,
        LOCATIONS,
        listings,
        POLICIES,
        kit_components,
        shopify_locations,
        square_locations,
        shiphero_warehouses,
        toast_restaurant,
        toast_multi_location,
        amazon_asins,
    )
