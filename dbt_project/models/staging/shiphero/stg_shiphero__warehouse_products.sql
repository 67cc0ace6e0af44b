-- One row per ShipHero warehouse product snapshot (SKU × warehouse at updated_at).
-- ShipHero's allocated units are committed to orders; non-sellable units are damaged or held.
{%- set number = "'^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'" %}

with source as (
    select * from {{ source('shiphero', 'shiphero_warehouse_products') }}
),

extracted as (
    select
        source_id,
        cursor_at,
        loaded_at,
        batch_id,
        payload ->> 'sku' as channel_sku,
        payload ->> 'warehouse_id' as channel_location,
        payload ->> 'on_hand' as on_hand_text,
        payload ->> 'available' as available_text,
        payload ->> 'allocated' as allocated_text,
        payload ->> 'non_sellable_quantity' as non_sellable_text
    from source
),

final as (
    select
        'shiphero' as channel,
        channel_sku,
        channel_location,
        cursor_at as snapshot_at,
        case when on_hand_text ~ {{ number }} then on_hand_text::numeric end as on_hand_quantity,
        case when available_text ~ {{ number }} then available_text::numeric end as available_quantity,
        case when allocated_text ~ {{ number }} then allocated_text::numeric end as committed_quantity,
        case when non_sellable_text ~ {{ number }} then non_sellable_text::numeric end as damaged_quantity,
        'EA' as uom,
        false as is_untracked_in_stock,
        source_id,
        loaded_at,
        batch_id
    from extracted
)

select * from final
