"""The channel registry (`channels.yaml`): which channels exist, their client, raw tables and file layouts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from orchestration.lib.files import SourceLayout

DEFAULT_REGISTRY = Path(__file__).resolve().parent.parent / "defs" / "extract" / "channels.yaml"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    client: str
    base_url: str
    token_env: str
    options: dict = field(default_factory=dict)
    enabled: bool = True

    @property
    def client_class(self):
        from orchestration.lib.channels import CLIENTS

        return CLIENTS[self.client]

    @property
    def entities(self) -> dict[str, str]:
        """raw table entity -> 'levels' | 'movements', as the client declares them."""
        return {e.name: e.kind for e in self.client_class.entities}

    def table(self, entity: str) -> str:
        return f"{self.name}_{entity}"

    def build_client(self, token: str, **overrides):
        return self.client_class(self.base_url, token, **{**self.options, **overrides})


@dataclass(frozen=True)
class Registry:
    channels: dict[str, ChannelConfig]
    file_layouts: dict[str, SourceLayout]

    @property
    def enabled(self) -> list[ChannelConfig]:
        return [c for c in self.channels.values() if c.enabled]


def load_registry(path: Path | None = None) -> Registry:
    path = path or DEFAULT_REGISTRY
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"cannot read channel registry {path}: {exc}") from None
    channels = {}
    for name, cfg in (doc.get("channels") or {}).items():
        if not NAME.match(name):
            raise RegistryError(f"{path}: channel name {name!r} must be lowercase letters, digits, underscores")
        missing = [k for k in ("client", "base_url", "token_env") if k not in cfg]
        if missing:
            raise RegistryError(f"{path}: channel {name} lacks {', '.join(missing)}")
        from orchestration.lib.channels import CLIENTS

        if cfg["client"] not in CLIENTS:
            raise RegistryError(f"{path}: channel {name}: unknown client {cfg['client']!r}; one of {', '.join(CLIENTS)}")
        base_url = str(cfg["base_url"]).rstrip("/")
        if not re.match(r"^https://|^http://(127\.0\.0\.1|localhost|\[::1\])(:|/|$)", base_url):
            raise RegistryError(f"{path}: channel {name}: base_url must be https:// (plain http only for loopback simulators)")
        channels[name] = ChannelConfig(name, cfg["client"], base_url, cfg["token_env"], dict(cfg.get("options") or {}),
                                       bool(cfg.get("enabled", True)))
    layouts = {}
    for name, cfg in ((doc.get("file") or {}).get("layouts") or {}).items():
        layouts[name] = SourceLayout(name=name, columns=cfg["columns"], values=cfg.get("values") or {},
                                     defaults=cfg.get("defaults") or {}, negate_outbound=bool(cfg.get("negate_outbound")),
                                     timestamp_format=cfg.get("timestamp_format"), timezone=cfg.get("timezone"))
    return Registry(channels, layouts)
