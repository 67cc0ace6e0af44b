with source as (
    select * from {{ source('file', 'file_policies') }}
)

select
    lower(trim(channel)) as channel,
    safety_buffer,
    percentage,
    maximum,
    minimum,
    lower(trim(conflict_rule)) as conflict_rule,
    in_flight_seconds
from source
