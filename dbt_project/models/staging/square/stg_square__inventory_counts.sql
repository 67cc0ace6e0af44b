-- One row per Square inventory count (variation × location × state at calculated_at).
-- IN_STOCK is the sellable count Square shows (on hand and available); WASTE is damaged stock and
-- RESERVED_FOR_SALE committed stock. Square quantities are decimal strings.
{%- set number = "'^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'" %}

with source as (
    select * from {{ source('square', 'square_inventory_counts') }}
),

extracted as (
    select
        source_id,
        cursor_at,
        loaded_at,
        batch_id,
        payload ->> 'catalog_object_id' as channel_sku,
        payload ->> 'location_id' as channel_location,
        payload ->> 'state' as inventory_state,
        case when payload ->> 'quantity' ~ {{ number }} then (payload ->> 'quantity')::numeric end as quantity
    from source
),

final as (
    select
        'square' as channel,
        channel_sku,
        channel_location,
        cursor_at as snapshot_at,
        case when inventory_state = 'IN_STOCK' then quantity end as on_hand_quantity,
        case when inventory_state = 'IN_STOCK' then quantity end as available_quantity,
        case when inventory_state = 'RESERVED_FOR_SALE' then quantity end as committed_quantity,
        case when inventory_state = 'WASTE' then quantity end as damaged_quantity,
        'EA' as uom,
        false as is_untracked_in_stock,
        source_id,
        loaded_at,
        batch_id
    from extracted
)

select * from final
