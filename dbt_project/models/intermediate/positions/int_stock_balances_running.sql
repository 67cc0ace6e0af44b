-- The on-hand balance after every ledger movement, per SKU and location: a physical count sets the
-- level, everything else adds to it (DESIGN §6). Independent of the valuation pass on purpose, so
-- checks can compare the two (invariant I-2), and the drift model can read the balance at any time.
with ledger as (
    select * from {{ ref('int_movements_unified') }}
),

grouped as (
    select
        ledger.*,
        -- Each count opens a new group; within a group the balance is the count plus later deltas.
        count(*) filter (where movement_type = 'physical_count') over (
            partition by sku, location
            order by occurred_at, event_id
            rows between unbounded preceding and current row
        ) as count_group
    from ledger
),

final as (
    select
        movement_id,
        sku,
        location,
        occurred_at,
        event_id,
        movement_type,
        quantity_base,
        sum(quantity_base) over (
            partition by sku, location, count_group
            order by occurred_at, event_id
            rows between unbounded preceding and current row
        ) as balance_after
    from grouped
)

select * from final
