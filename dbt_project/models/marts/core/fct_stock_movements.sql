-- One row per movement: the primary key, added once the table is written (macros/indexes.sql).
-- With var ledger_incremental it follows the ledger: each build writes again only the movements the ledger wrote
-- since its last one (macros/ledger.sql).
-- depends_on: {{ ref('int_movements_deduplicated') }}
{{ config(**ledger_config(
    pre_hook=["{{ incremental_lock(ref('int_movements_deduplicated')) }}", "{{ ledger_mart_catch_up() }}"],
    post_hook=["{{ add_primary_key(['movement_id']) }}", "{{ index_once(['ledgered_at']) }}"],
)) }}
with ledger as (
    select * from {{ ref('int_movements_unified') }} as unified
    where {{ ledger_mart_increment('unified') }}
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
        ledger.loaded_at,
        ledger.ledgered_at
    from ledger
    inner join skus on skus.sku = ledger.sku
)

select * from final
