-- One row per Shopify inventory level snapshot (item × location), quantities by name.
-- Quantities are parsed only when they are plain numbers; anything else becomes null for the
-- quality checks to report, instead of failing the whole build.
{%- set number = "'^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'" %}

with source as (
    select * from {{ source('shopify', 'shopify_inventory_levels') }}
),

extracted as (
    select
        source_id,
        cursor_at,
        loaded_at,
        batch_id,
        payload -> 'inventoryItem' ->> 'id' as channel_sku,
        payload -> 'location' ->> 'id' as channel_location,
        payload -> 'inventoryItem' ->> 'tracked' as tracked_text,
        jsonb_path_query_first(payload, '$.quantities[*] ? (@.name == "on_hand").quantity') #>> '{}' as on_hand_text,
        jsonb_path_query_first(payload, '$.quantities[*] ? (@.name == "available").quantity') #>> '{}' as available_text,
        jsonb_path_query_first(payload, '$.quantities[*] ? (@.name == "committed").quantity') #>> '{}' as committed_text,
        jsonb_path_query_first(payload, '$.quantities[*] ? (@.name == "damaged").quantity') #>> '{}' as damaged_text
    from source
),

final as (
    select
        'shopify' as channel,
        channel_sku,
        channel_location,
        cursor_at as snapshot_at,
        case when on_hand_text ~ {{ number }} then on_hand_text::numeric end as on_hand_quantity,
        case when available_text ~ {{ number }} then available_text::numeric end as available_quantity,
        case when committed_text ~ {{ number }} then committed_text::numeric end as committed_quantity,
        case when damaged_text ~ {{ number }} then damaged_text::numeric end as damaged_quantity,
        -- Channels count the listing's sellable unit; unit confusion is detected downstream.
        'EA' as uom,
        -- An untracked Shopify item is always sellable, with no count: the same case as Toast IN_STOCK.
        coalesce(tracked_text = 'false', false) as is_untracked_in_stock,
        source_id,
        loaded_at,
        batch_id
    from extracted
)

select * from final
