"""The extraction asset factory: one asset `raw/<channel>/<entity>` per channel entity in the registry.

Channels are data: the registry (channels.yaml) names the client class and its options; the client
declares its entities. Assets never speak HTTP themselves: they call the client's reader and hand the
records to `orchestration.lib.extract.extract_stream`, which owns loss-free loading.
"""


import json

import dagster as dg

from orchestration.lib.extract import extract_stream
from orchestration.lib.registry import ChannelConfig, Registry
from orchestration.lib.resources import WarehouseResource


class ChannelResource(dg.ConfigurableResource):
    """One channel's API: base URL and token (always from the environment via EnvVar)."""

    base_url: str
    token: str

    def client(self, channel: ChannelConfig):
        return channel.client_class(self.base_url, self.token, **channel.options)


def channel_resource_key(channel: str) -> str:
    return f"channel_{channel}"


def _reader(client, entity):
    from orchestration.lib.channels import MovementCursor

    read = getattr(client, entity.reader)
    if entity.kind == "movements":
        return lambda cursor: read(MovementCursor.from_json(json.dumps(cursor)) if cursor else None)
    from orchestration.lib.channels.http import parse_timestamp

    return lambda cursor: read(parse_timestamp(cursor["at"]) if cursor else None)


def build_extract_asset(channel: ChannelConfig, entity) -> dg.AssetsDefinition:
    key = channel_resource_key(channel.name)

    @dg.asset(
        key=["raw", channel.name, entity.name],
        group_name="extract",
        kinds={"postgres", channel.client},
        required_resource_keys={"warehouse", key},
        retry_policy=dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
        description=(
            f"raw.{channel.table(entity.name)}: {entity.kind} from the {channel.name} API ({channel.client} client), "
            "landed once per source id with the cursor committed in the same transaction."
        ),
    )
    def _extract(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        warehouse: WarehouseResource = context.resources.warehouse
        api: ChannelResource = getattr(context.resources, key)
        with api.client(channel) as client:
            result = extract_stream(lambda: warehouse.connect("loader"), channel.name, entity.name, _reader(client, entity))
        return dg.MaterializeResult(metadata={**result.metadata(), "dagster/row_count": result.inserted})

    return _extract


def build_extract_definitions(registry: Registry) -> dg.Definitions:
    assets, resources = [], {}
    for channel in registry.channels.values():
        if not channel.enabled:
            # Declared (their raw tables feed staging) but never extracted until enabled.
            assets += [
                dg.AssetSpec(
                    key=["raw", channel.name, entity.name],
                    group_name="extract",
                    kinds={"postgres", channel.client},
                    description=f"raw.{channel.table(entity.name)}: {entity.kind} from {channel.name} "
                    "(channel disabled in channels.yaml; set `enabled: true` to extract it).",
                )
                for entity in channel.client_class.entities
            ]
            continue
        resources[channel_resource_key(channel.name)] = ChannelResource(
            base_url=channel.base_url, token=dg.EnvVar(channel.token_env)
        )
        assets += [build_extract_asset(channel, entity) for entity in channel.client_class.entities]
    return dg.Definitions(assets=assets, resources=resources)
