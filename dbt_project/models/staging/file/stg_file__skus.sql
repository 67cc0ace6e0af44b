with source as (
    select * from {{ source('file', 'file_skus') }}
)

select
    trim(sku) as sku,
    upper(trim(base_uom)) as base_uom,
    description
from source
