-- One row per movement: the primary key, added once the table is written (macros/indexes.sql).
{{ config(post_hook="{{ add_primary_key(['movement_id']) }}") }}
with ledger as (
    select * from {{ ref('int_movements_unified') }}
),

skus as (
    select * from {{ ref('stg_file__skus') }}
),

final as (
    select
        ledger.movement_id,
        ledger.source_name,
        ledger.event_id,
        ledger.channel,
        ledger.occurred_at,
        ledger.sku,
        ledger.location,
        ledger.movement_type,
        ledger.quantity_base,
        skus.base_uom,
        ledger.unit_cost_base,
        ledger.currency,
        ledger.reference,
        ledger.quantity_source,
        ledger.uom_source,
        ledger.factor_to_base,
        ledger.loaded_at
    from ledger
    inner join skus on skus.sku = ledger.sku
)

select * from final
