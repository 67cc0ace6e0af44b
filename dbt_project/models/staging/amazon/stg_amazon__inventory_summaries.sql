-- One row per FBA inventory summary snapshot (seller SKU × marketplace).
-- On hand in an Amazon fulfilment centre = fulfillable + reserved + unfulfillable + researching;
-- inbound quantities are not on hand yet. Needs summaries read with details=true.
{%- set number = "'^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'" %}

with source as (
    select * from {{ source('amazon', 'amazon_inventory_summaries') }}
),

extracted as (
    select
        source_id,
        cursor_at,
        loaded_at,
        batch_id,
        payload ->> 'sellerSku' as channel_sku,
        payload ->> 'marketplaceId' as channel_location,
        payload -> 'inventoryDetails' ->> 'fulfillableQuantity' as fulfillable_text,
        payload -> 'inventoryDetails' -> 'reservedQuantity' ->> 'totalReservedQuantity' as reserved_text,
        payload -> 'inventoryDetails' -> 'unfulfillableQuantity' ->> 'totalUnfulfillableQuantity' as unfulfillable_text,
        payload -> 'inventoryDetails' -> 'researchingQuantity' ->> 'totalResearchingQuantity' as researching_text
    from source
),

typed as (
    select
        source_id,
        cursor_at,
        loaded_at,
        batch_id,
        channel_sku,
        channel_location,
        case when fulfillable_text ~ {{ number }} then fulfillable_text::numeric end as fulfillable_quantity,
        case when reserved_text ~ {{ number }} then reserved_text::numeric end as reserved_quantity,
        case when unfulfillable_text ~ {{ number }} then unfulfillable_text::numeric end as unfulfillable_quantity,
        case when researching_text ~ {{ number }} then researching_text::numeric end as researching_quantity
    from extracted
),

final as (
    select
        'amazon' as channel,
        channel_sku,
        channel_location,
        cursor_at as snapshot_at,
        fulfillable_quantity + reserved_quantity + unfulfillable_quantity
            + coalesce(researching_quantity, 0) as on_hand_quantity,
        fulfillable_quantity as available_quantity,
        reserved_quantity as committed_quantity,
        unfulfillable_quantity as damaged_quantity,
        'EA' as uom,
        false as is_untracked_in_stock,
        source_id,
        loaded_at,
        batch_id
    from typed
)

select * from final
