-- Masters of record without a change feed (Toast, Amazon FBA: levels only) tell us their stock only
-- as snapshots. Each snapshot of such a master is a count of that location at that time, so it enters
-- the ledger as a physical_count: on-hand and valuation then follow the master exactly.
with levels as (
    select * from {{ ref('int_channel_levels_unioned') }}
),

listings as (
    select * from {{ ref('stg_file__listings') }}
),

locations as (
    select * from {{ ref('stg_file__locations') }}
),

final as (
    select
        levels.channel,
        levels.channel || '_snapshots' as source_name,
        levels.source_id as event_id,
        levels.snapshot_at as occurred_at,
        levels.channel_sku,
        levels.channel_location,
        'physical_count' as movement_type,
        levels.on_hand_quantity as quantity,
        levels.uom,
        cast(null as numeric) as unit_cost,
        cast(null as text) as currency,
        'snapshot' as reference,
        levels.loaded_at,
        levels.batch_id
    from levels
    inner join listings
        on listings.channel = levels.channel
        and listings.channel_sku = levels.channel_sku
        and listings.channel_location = levels.channel_location
    inner join locations
        on locations.location = listings.location
        and locations.master_channel = levels.channel
    where levels.channel in (
        {%- for channel in var('snapshot_only_masters', []) %}'{{ channel }}'{% if not loop.last %}, {% endif %}{%- endfor %}
    )
        and levels.on_hand_quantity is not null
        and not levels.is_untracked_in_stock
        and levels.snapshot_at is not null
)

select * from final
