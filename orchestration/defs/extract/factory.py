"""The extraction asset factory: an asset `raw/<channel>/<entity>` per channel entity in the registry,
all in one subsettable step that reads the channels concurrently.

Channels are data: the registry (channels.yaml) names the client class and its options; the client
declares its entities. Assets never speak HTTP themselves: they call the client's reader and hand the
records to `orchestration.lib.extract.extract_stream`, which owns loss-free loading.
"""


import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

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


def extract_key(channel: ChannelConfig, entity) -> dg.AssetKey:
    return dg.AssetKey(["raw", channel.name, entity.name])


def _extract_channel(context, channel: ChannelConfig, entities: list) -> tuple[list[tuple], list[str]]:
    """One channel's selected entities, in order (they share the channel's rate limit): what landed and
    what failed (an entity that fails does not stop the channel's next one)."""
    warehouse: WarehouseResource = context.resources.warehouse
    api: ChannelResource = getattr(context.resources, channel_resource_key(channel.name))
    landed, failed = [], []
    with api.client(channel) as client:
        for entity in entities:
            started = time.monotonic()
            try:
                result = extract_stream(lambda: warehouse.connect("loader"), channel.name, entity.name,
                                        _reader(client, entity), ordered=entity.kind == "movements")
            except Exception as exc:  # noqa: BLE001 - reported by the step, after the others have landed
                failed.append(f"{channel.name}/{entity.name}: {type(exc).__name__}: {exc}")
                continue
            landed.append((extract_key(channel, entity), result, time.monotonic() - started))
    return landed, failed


def build_extract_asset(channels: list[ChannelConfig]) -> dg.AssetsDefinition:
    """Every enabled channel's entities as one subsettable step: channels are read concurrently (one
    thread each: their APIs and rate limits are independent, so a cycle waits for the slowest channel,
    not the sum), a channel's own entities in sequence. A channel that fails does not stop the others
    from landing; the step then fails naming it, and its retry re-reads from the committed cursors."""
    specs = [
        dg.AssetSpec(
            key=extract_key(channel, entity),
            group_name="extract",
            kinds={"postgres", channel.client},
            description=(
                f"raw.{channel.table(entity.name)}: {entity.kind} from the {channel.name} API ({channel.client} "
                "client), landed once per source id with the cursor committed in the same transaction."
            ),
        )
        for channel in channels
        for entity in channel.client_class.entities
    ]

    @dg.multi_asset(
        name="extract_channels",
        specs=specs,
        can_subset=True,
        required_resource_keys={"warehouse", *(channel_resource_key(c.name) for c in channels)},
        retry_policy=dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
    )
    def _extract(context: dg.AssetExecutionContext):
        selected = context.selected_asset_keys
        work = {c.name: (c, [e for e in c.client_class.entities if extract_key(c, e) in selected]) for c in channels}
        work = {name: job for name, job in work.items() if job[1]}
        failures = []
        with ThreadPoolExecutor(max_workers=max(len(work), 1), thread_name_prefix="extract") as pool:
            futures = {pool.submit(_extract_channel, context, c, entities): name for name, (c, entities) in work.items()}
            for future in as_completed(futures):
                try:
                    landed, failed = future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. the client could not be built
                    landed, failed = [], [f"{futures[future]}: {type(exc).__name__}: {exc}"]
                for problem in failed:
                    context.log.error(f"extraction failed: {problem}")
                failures += failed
                for key, result, seconds in landed:
                    yield dg.MaterializeResult(asset_key=key, metadata={
                        **result.metadata(), "dagster/row_count": result.inserted, "seconds": round(seconds, 2)})
        if failures:
            raise dg.Failure(description="extraction failed for " + "; ".join(sorted(failures)))

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
    enabled = [c for c in registry.channels.values() if c.enabled]
    if enabled:
        assets.append(build_extract_asset(enabled))
    return dg.Definitions(assets=assets, resources=resources)
