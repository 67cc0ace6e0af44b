with listings as (
    select * from {{ ref('stg_file__listings') }}
),

final as (
    select
        channel,
        channel_sku,
        channel_location,
        sku,
        location
    from listings
)

select * from final
