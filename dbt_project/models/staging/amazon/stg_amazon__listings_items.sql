-- One row per merchant-fulfilled offer quantity: listing × fulfillment channel code (DEFAULT = MFN).
-- The offer quantity is what Amazon may sell; Amazon knows no on-hand for merchant stock.
{%- set number = "'^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'" %}

with source as (
    select * from {{ source('amazon', 'amazon_listings_items') }}
),

availability as (
    select
        source.source_id,
        source.cursor_at,
        source.loaded_at,
        source.batch_id,
        source.payload ->> 'sku' as channel_sku,
        offer.value ->> 'fulfillmentChannelCode' as channel_location,
        offer.value ->> 'quantity' as quantity_text
    from source
    cross join lateral jsonb_array_elements(
        case when jsonb_typeof(source.payload -> 'fulfillmentAvailability') = 'array'
            then source.payload -> 'fulfillmentAvailability' else '[]'::jsonb end
    ) as offer (value)
),

final as (
    select
        'amazon' as channel,
        channel_sku,
        channel_location,
        cursor_at as snapshot_at,
        cast(null as numeric) as on_hand_quantity,
        case when quantity_text ~ {{ number }} then quantity_text::numeric end as available_quantity,
        cast(null as numeric) as committed_quantity,
        cast(null as numeric) as damaged_quantity,
        'EA' as uom,
        false as is_untracked_in_stock,
        source_id,
        loaded_at,
        batch_id
    from availability
)

select * from final
