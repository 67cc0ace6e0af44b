with source as (
    select * from {{ source('file', 'file_uom_conversions') }}
)

select
    nullif(trim(sku), '') as sku,
    upper(trim(uom)) as uom,
    factor_to_base
from source
