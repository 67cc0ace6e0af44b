-- Every source's movements in the canonical shape of DESIGN §5, before mapping.
-- `channel` names whose identifiers `channel_sku` / `channel_location` are; the file channel already
-- uses master identifiers.
-- A view: int_movements_mapped reads through it either everything or only the batches an incremental build takes
-- (macros/ledger.sql), and the batch filter reaches each raw table's batch_id index.
{{ config(materialized='view') }}
with file_movements as (
    select
        'file' as channel,
        source_name,
        event_id,
        occurred_at,
        sku as channel_sku,
        location as channel_location,
        movement_type,
        quantity,
        uom,
        unit_cost,
        currency,
        reference,
        loaded_at,
        batch_id
    from {{ ref('stg_file__movements') }}
),

unioned as (
    select * from file_movements
    {%- for model in var('movement_sources', []) %}
    union all
    select
        channel, source_name, event_id, occurred_at, channel_sku, channel_location, movement_type,
        quantity, uom, unit_cost, currency, reference, loaded_at, batch_id
    from {{ ref(model) }}
    {%- endfor %}
)

select * from unioned
