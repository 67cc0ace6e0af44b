with source as (
    select * from {{ source('file', 'file_movements') }}
),

renamed as (
    select
        source as source_name,
        event_id,
        occurred_at,
        trim(sku) as sku,
        trim(location) as location,
        lower(trim(movement_type)) as movement_type,
        quantity,
        upper(trim(uom)) as uom,
        unit_cost,
        upper(nullif(trim(currency), '')) as currency,
        nullif(trim(reference), '') as reference,
        batch_id,
        loaded_at
    from source
)

select * from renamed
