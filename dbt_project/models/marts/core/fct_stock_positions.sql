with folded as (
    select * from {{ ref('int_stock_positions_folded') }}
),

valuation as (
    -- The value changes fct_inventory_valuation lists, summed from the valuation pass's own entries (the
    -- same numbers; not waiting for that mart shortens the path from a movement to its correction).
    select
        sku,
        location,
        sum(fifo_stock_value_change) as inventory_value_fifo,
        sum(avco_stock_value_change) as inventory_value_avco
    from {{ ref('int_valuation_entries_posted') }}
    where entry_kind = 'movement'
    group by sku, location
),

levels as (
    select * from {{ ref('int_channel_levels_latest') }}
),

locations as (
    select * from {{ ref('stg_file__locations') }}
),

master_levels as (
    -- What the location's master of record reports beyond on-hand: allocated and unsellable units.
    select levels.*
    from levels
    inner join locations
        on locations.location = levels.location
        and locations.master_channel = levels.channel
),

final as (
    select
        folded.sku,
        folded.location,
        folded.on_hand_quantity,
        coalesce(master_levels.committed_quantity, 0) as committed_quantity,
        coalesce(master_levels.damaged_quantity, 0) as damaged_quantity,
        folded.in_transit_quantity,
        folded.on_hand_quantity
            - coalesce(master_levels.committed_quantity, 0)
            - coalesce(master_levels.damaged_quantity, 0) as available_quantity,
        coalesce(valuation.inventory_value_fifo, 0) as inventory_value_fifo,
        coalesce(valuation.inventory_value_avco, 0) as inventory_value_avco,
        case
            when folded.on_hand_quantity <> 0
                then coalesce(valuation.inventory_value_avco, 0) / folded.on_hand_quantity
        end as unit_cost_avco,
        greatest(folded.last_movement_at, master_levels.snapshot_at) as as_of
    from folded
    left join valuation on valuation.sku = folded.sku and valuation.location = folded.location
    left join master_levels on master_levels.sku = folded.sku and master_levels.location = folded.location
)

select * from final
