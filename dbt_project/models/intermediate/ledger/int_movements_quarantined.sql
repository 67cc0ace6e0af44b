-- Movements held out of the ledger, with the reason: unknown SKU, location or unit (mapping), or a
-- receipt no source reports with a cost. They are replayed automatically by the next build once the
-- missing reference data or cost arrives. Both are read through partial indexes (int_movements_mapped,
-- int_movements_deduplicated), not by a scan of the ledger.
with unmapped as (
    select
        channel,
        source_name,
        event_id,
        occurred_at,
        channel_sku,
        channel_location,
        movement_type,
        quantity,
        uom,
        quarantine_reason,
        loaded_at
    from {{ ref('int_movements_mapped') }}
    where quarantine_reason is not null
),

costless_receipts as (
    select
        channel,
        source_name,
        event_id,
        occurred_at,
        sku as channel_sku,
        location as channel_location,
        movement_type,
        quantity_source as quantity,
        uom_source as uom,
        'receipt_without_cost' as quarantine_reason,
        loaded_at
    from {{ ref('int_movements_deduplicated') }}
    where is_reported_first and movement_type = 'receipt' and unit_cost_base is null
),

final as (
    select * from unmapped
    union all
    select * from costless_receipts
)

select * from final
