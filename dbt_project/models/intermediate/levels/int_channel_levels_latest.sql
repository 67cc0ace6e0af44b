-- The latest level each channel shows for each master SKU and location, mapped through the listings.
with levels as (
    select * from {{ ref('int_channel_levels_unioned') }}
),

listings as (
    select * from {{ ref('stg_file__listings') }}
),

mapped as (
    select
        levels.*,
        listings.sku,
        listings.location
    from levels
    inner join listings
        on listings.channel = levels.channel
        and listings.channel_sku = levels.channel_sku
        and listings.channel_location = levels.channel_location
),

final as (
    select distinct on (channel, sku, location)
        channel,
        sku,
        location,
        channel_sku,
        channel_location,
        snapshot_at,
        on_hand_quantity,
        available_quantity,
        committed_quantity,
        damaged_quantity,
        uom,
        is_untracked_in_stock,
        source_id,
        loaded_at
    from mapped
    -- Rows that carry no shown figure (e.g. a Square count in a non-stock state) never win.
    where on_hand_quantity is not null or available_quantity is not null or is_untracked_in_stock
    order by channel, sku, location, snapshot_at desc, loaded_at desc, source_id desc
)

select * from final
