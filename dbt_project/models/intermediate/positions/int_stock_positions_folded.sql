-- On-hand per SKU and location now (the last running balance), with stock sent but not yet received.
with balances as (
    select * from {{ ref('int_stock_balances_running') }}
),

ledger as not materialized (
    -- (read by three CTEs: materialized, the whole ledger would be copied once, 12 s at 10M movements, to be
    -- scanned for counts and transfers; inlined, each reads only its movement type)
    select * from {{ ref('int_movements_unified') }}
),

latest as (
    select
        sku,
        location,
        balance_after as on_hand_quantity,
        occurred_at as last_movement_at
    from balances
    where is_latest
),

last_count as (
    select sku, location, max(occurred_at) as last_counted_at
    from ledger
    where movement_type = 'physical_count'
    group by sku, location
),

in_transit as (
    -- Sent, not yet received: transfer_out rows whose transfer id has no transfer_in yet.
    select
        t_out.sku,
        t_out.location,
        -sum(t_out.quantity_base) as in_transit_quantity
    from ledger as t_out
    where t_out.movement_type = 'transfer_out'
        and not exists (
            select 1 from ledger as t_in
            where t_in.movement_type = 'transfer_in'
                and t_in.sku = t_out.sku
                and t_in.reference = t_out.reference
        )
    group by t_out.sku, t_out.location
),

final as (
    select
        latest.sku,
        latest.location,
        latest.on_hand_quantity,
        coalesce(in_transit.in_transit_quantity, 0) as in_transit_quantity,
        last_count.last_counted_at,
        latest.last_movement_at
    from latest
    left join last_count on last_count.sku = latest.sku and last_count.location = latest.location
    left join in_transit on in_transit.sku = latest.sku and in_transit.location = latest.location
)

select * from final
