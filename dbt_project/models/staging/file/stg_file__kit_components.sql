with source as (
    select * from {{ source('file', 'file_kit_components') }}
)

select
    trim(kit_sku) as kit_sku,
    trim(component_sku) as component_sku,
    quantity_per_kit
from source
