with source as (
    select * from {{ source('file', 'file_listings') }}
)

select
    lower(trim(channel)) as channel,
    trim(channel_sku) as channel_sku,
    trim(channel_location) as channel_location,
    trim(sku) as sku,
    trim(location) as location
from source
