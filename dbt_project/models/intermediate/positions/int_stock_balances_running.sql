-- The on-hand balance after every ledger movement, per SKU and location: a physical count sets the
-- level, everything else adds to it (DESIGN §6). Independent of the valuation pass on purpose, so
-- checks can compare the two (invariant I-2), and the drift model can read the balance at any time.
-- Order within a position: occurred_at, then event_id and source_name by code point (the valuation's order,
-- DESIGN §7 rule 2, without its transfer exception), so that two sources' events at the same instant with the
-- same id always fold the same way.
with ledger as (
    select * from {{ ref('int_movements_unified') }}
),

grouped as (
    select
        ledger.*,
        -- Each count opens a new group; within a group the balance is the count plus later deltas.
        count(*) filter (where movement_type = 'physical_count') over by_position as count_group,
        -- the position's latest movement (from the same sort): its balance is the on-hand now
        lead(movement_id) over by_position is null as is_latest
    from ledger
    window by_position as (
        partition by sku, location
        order by occurred_at, event_id collate "C", source_name collate "C"
        rows between unbounded preceding and current row
    )
),

final as (
    select
        movement_id,
        sku,
        location,
        occurred_at,
        event_id,
        source_name,
        movement_type,
        quantity_base,
        sum(quantity_base) over (
            partition by sku, location, count_group
            order by occurred_at, event_id collate "C", source_name collate "C"
            rows between unbounded preceding and current row
        ) as balance_after,
        is_latest
    from grouped
)

select * from final
