-- One row per Toast stock snapshot (menu item × restaurant location, at the time Toast answered).
-- QUANTITY carries a count; OUT_OF_STOCK means 0; IN_STOCK means "sell without counting": no
-- quantity at all, flagged instead of guessed.
{%- set number = "'^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'" %}

with source as (
    select * from {{ source('toast', 'toast_stock_items') }}
),

extracted as (
    select
        source_id,
        cursor_at,
        loaded_at,
        batch_id,
        payload ->> 'guid' as channel_sku,
        payload ->> 'restaurantGuid' as channel_location,
        payload ->> 'status' as stock_status,
        payload ->> 'quantity' as quantity_text
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
        stock_status,
        case
            when stock_status = 'OUT_OF_STOCK' then 0
            when stock_status = 'QUANTITY' and quantity_text ~ {{ number }} then quantity_text::numeric
        end as quantity
    from extracted
),

final as (
    select
        'toast' as channel,
        channel_sku,
        channel_location,
        cursor_at as snapshot_at,
        quantity as on_hand_quantity,
        quantity as available_quantity,
        cast(null as numeric) as committed_quantity,
        cast(null as numeric) as damaged_quantity,
        'EA' as uom,
        stock_status = 'IN_STOCK' as is_untracked_in_stock,
        source_id,
        loaded_at,
        batch_id
    from typed
)

select * from final
