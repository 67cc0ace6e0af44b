"""Channel API clients: one class per channel, each with the same domain verbs.

`CLIENTS` is the registry the extraction factory and the pusher look clients up in. Every client is
built from `(base_url, token, **channel options)` (tokens come from the caller, which reads them from
the environment: SHOPIFY_ACCESS_TOKEN, SQUARE_ACCESS_TOKEN, AMAZON_SP_ACCESS_TOKEN,
SHIPHERO_ACCESS_TOKEN, TOAST_ACCESS_TOKEN) and offers
- `read_levels(since=None)` (and the readers named in its `entities`) → `Record`s for `raw.<channel>_<entity>`,
- `read_movements(cursor)` where the API has history (in feed order; a read that leaves a backlog for the
  next one ends with a `Backlog` marker),
- `read_level(target)` and `set_level(target, from_quantity, to_quantity, idempotency_key, as_of=None)` →
  `PushResult` (never raises for channel failures; `from_quantity=None` expects no count, never a
  blind write; an `unknown` outcome is settled by `read_level`).
Importing this package defines nothing but classes.
"""

from .amazon import AmazonClient
from .base import Backlog, ChannelClient, Entity, LevelTarget, MovementCursor, PushResult, Record
from .http import (
    AuthError,
    BadResponse,
    ChannelError,
    ConfigError,
    OutcomeUnknown,
    RateLimited,
    RequestRejected,
    RetryPolicy,
    TransientError,
)
from .shiphero import ShipHeroClient
from .shopify import ShopifyClient
from .square import SquareClient
from .toast import ToastClient

CLIENTS: dict[str, type[ChannelClient]] = {
    "shopify": ShopifyClient,
    "square": SquareClient,
    "amazon": AmazonClient,
    "shiphero": ShipHeroClient,
    "toast": ToastClient,
}

# Environment variable holding each channel's token (read by orchestration.settings, never here).
TOKEN_ENV = {
    "shopify": "SHOPIFY_ACCESS_TOKEN",
    "square": "SQUARE_ACCESS_TOKEN",
    "amazon": "AMAZON_SP_ACCESS_TOKEN",
    "shiphero": "SHIPHERO_ACCESS_TOKEN",
    "toast": "TOAST_ACCESS_TOKEN",
}

__all__ = [
    "CLIENTS", "TOKEN_ENV", "AmazonClient", "AuthError", "Backlog", "BadResponse", "ChannelClient", "ChannelError",
    "ConfigError", "Entity", "LevelTarget", "MovementCursor", "OutcomeUnknown", "PushResult", "RateLimited",
    "Record", "RequestRejected", "RetryPolicy", "ShipHeroClient", "ShopifyClient", "SquareClient",
    "ToastClient", "TransientError",
]
