with folded as (
    select * from {{ ref('int_stock_positions_folded') }}
),

valuation as (
    -- The stock value after each position's last movement, from the valuation pass's own entries (the values
    -- fct_inventory_valuation lists; not waiting for that mart shortens the path from a movement to its
    -- correction): the balance values of the last movement entry at the location, looked up per position by
    -- index (sku, location, valuation_sequence; int_valuation_entries_posted's post-hook), not summed over every entry.
    select folded.sku, folded.location, last_entry.inventory_value_fifo, last_entry.inventory_value_avco
    from folded
    cross join lateral (
        select entries.fifo_balance_value as inventory_value_fifo, entries.avco_balance_value as inventory_value_avco
        from {{ ref('int_valuation_entries_posted') }} as entries
        where entries.sku = folded.sku and entries.location = folded.location and entries.entry_kind = 'movement'
        order by entries.valuation_sequence desc
        limit 1
    ) as last_entry
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
