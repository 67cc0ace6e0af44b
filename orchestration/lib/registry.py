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
    entities: dict[str, str]
    options: dict = field(default_factory=dict)

    def table(self, entity: str) -> str:
        return f"{self.name}_{entity}"


@dataclass(frozen=True)
class Registry:
    channels: dict[str, ChannelConfig]
    file_layouts: dict[str, SourceLayout]


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
        missing = [k for k in ("client", "base_url", "token_env", "entities") if k not in cfg]
        if missing:
            raise RegistryError(f"{path}: channel {name} lacks {', '.join(missing)}")
        for entity, kind in cfg["entities"].items():
            if not NAME.match(entity) or kind not in ("levels", "movements"):
                raise RegistryError(f"{path}: channel {name} entity {entity!r}: kind must be levels or movements")
        channels[name] = ChannelConfig(name, cfg["client"], cfg["base_url"].rstrip("/"), cfg["token_env"],
                                       dict(cfg["entities"]), dict(cfg.get("options") or {}))
    layouts = {}
    for name, cfg in ((doc.get("file") or {}).get("layouts") or {}).items():
        layouts[name] = SourceLayout(name=name, columns=cfg["columns"], values=cfg.get("values") or {},
                                     defaults=cfg.get("defaults") or {}, negate_outbound=bool(cfg.get("negate_outbound")),
                                     timestamp_format=cfg.get("timestamp_format"), timezone=cfg.get("timezone"))
    return Registry(channels, layouts)
