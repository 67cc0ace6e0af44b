with source as (
    select * from {{ source('file', 'file_locations') }}
)

select
    trim(location) as location,
    lower(trim(kind)) as location_kind,
    lower(trim(master_channel)) as master_channel
from source
