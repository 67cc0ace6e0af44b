with locations as (
    select * from {{ ref('stg_file__locations') }}
),

final as (
    select
        location,
        location_kind,
        master_channel
    from locations
)

select * from final
