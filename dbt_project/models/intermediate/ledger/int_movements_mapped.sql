-- Movements mapped to master SKU and location through the reference data, with the UoM factor found
-- and, where anything is unknown, the reason the movement is quarantined (never guessed).
-- With var ledger_incremental, a build maps only the batches loaded since the last one, unless something else
-- changed in raw (reference data above all): then it maps the whole ledger again (macros/ledger.sql).
{{ config(**ledger_config(
    pre_hook=["{{ ledger_take_loads() }}", "{{ ledger_begin_stamp('mapped_at') }}"],
    post_hook=[
        "{{ add_primary_key(['source_name', 'event_id']) }}",
        "{{ index_once(['mapped_at']) }}",
        "{{ index_once(['sku', 'location', 'movement_type', ledger_duplicate_key()], where='quarantine_reason IS NULL', match='%COALESCE(reference%') }}",
        "{{ index_once(['quarantine_reason'], where='quarantine_reason IS NOT NULL') }}",
    ],
)) }}
with movements as (
    {%- if is_incremental() %}
    select * from {{ ref('int_movements_unioned') }}
    where {{ ledger_whole() }}
    union all
    select unioned.* from {{ ref('int_movements_unioned') }} as unioned
    where not {{ ledger_whole() }}
        and unioned.batch_id = any({{ ledger_batches() }})
        and not exists (
            select 1 from {{ this }} as mapped
            where mapped.source_name = unioned.source_name and mapped.event_id = unioned.event_id
        )
    {%- else %}
    select * from {{ ref('int_movements_unioned') }}
    {%- endif %}
),

listings as (
    select * from {{ ref('stg_file__listings') }}
),

skus as (
    select * from {{ ref('stg_file__skus') }}
),

locations as (
    select * from {{ ref('stg_file__locations') }}
),

factors as (
    select * from {{ ref('int_uom_factors_resolved') }}
),

mapped as (
    select
        m.*,
        case when m.channel = 'file' then m.channel_sku else l.sku end as sku,
        case when m.channel = 'file' then m.channel_location else l.location end as location
    from movements as m
    left join listings as l
        on l.channel = m.channel
        and l.channel_sku = m.channel_sku
        and l.channel_location = m.channel_location
),

checked as (
    select
        mapped.*,
        f.factor_to_base,
        case
            when mapped.sku is null then 'unmapped_listing'
            when s.sku is null then 'unknown_sku'
            when loc.location is null then 'unknown_location'
            when mapped.movement_type not in (
                'receipt', 'sale', 'customer_return', 'vendor_return', 'transfer_out', 'transfer_in',
                'adjustment', 'damage', 'physical_count'
            ) then 'unknown_movement_type'
            when f.factor_to_base is null then 'unknown_uom'
            when mapped.movement_type in ('receipt', 'customer_return', 'transfer_in') and mapped.quantity < 0
                then 'negative_inbound_quantity'
            when mapped.movement_type in ('sale', 'vendor_return', 'transfer_out', 'damage') and mapped.quantity > 0
                then 'positive_outbound_quantity'
            when mapped.movement_type = 'physical_count' and mapped.quantity < 0 then 'negative_count'
        end as quarantine_reason,
        {{ ledger_stamp('mapped_at') }} as mapped_at
    from mapped
    left join skus as s on s.sku = mapped.sku
    left join locations as loc on loc.location = mapped.location
    left join factors as f on f.sku = mapped.sku and f.uom = mapped.uom
)

select * from checked
