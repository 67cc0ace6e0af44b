-- Every channel's level snapshots in one shape, before mapping (sources listed in var('level_sources')).
{%- set sources = var('level_sources', []) %}
{%- if sources | length == 0 %}
select
    null::text as channel,
    null::text as channel_sku,
    null::text as channel_location,
    null::timestamptz as snapshot_at,
    null::numeric as on_hand_quantity,
    null::numeric as available_quantity,
    null::numeric as committed_quantity,
    null::numeric as damaged_quantity,
    null::text as uom,
    false as is_untracked_in_stock,
    null::text as source_id,
    null::timestamptz as loaded_at,
    null::text as batch_id
where false
{%- else %}
{%- for model in sources %}
select
    channel,
    channel_sku,
    channel_location,
    snapshot_at,
    on_hand_quantity,
    available_quantity,
    committed_quantity,
    damaged_quantity,
    uom,
    coalesce(is_untracked_in_stock, false) as is_untracked_in_stock,
    source_id,
    loaded_at,
    batch_id
from {{ ref(model) }}
{% if not loop.last %}union all{% endif %}
{%- endfor %}
{%- endif %}
