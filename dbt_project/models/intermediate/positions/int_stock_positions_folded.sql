-- On-hand per SKU and location as the fold of the ledger (DESIGN §6, invariant I-2): the last
-- physical count sets the level at its time; later movements add to it; earlier ones no longer count.
-- Independent of the valuation pass on purpose, so a check can compare the two.
with ledger as (
    select * from {{ ref('int_movements_unified') }}
),

last_count as (
    select distinct on (sku, location)
        sku,
        location,
        occurred_at,
        event_id,
        quantity_base
    from ledger
    where movement_type = 'physical_count'
    order by sku, location, occurred_at desc, event_id desc
),

after_count as (
    select
        o.sku,
        o.location,
        sum(o.quantity_base) as delta
    from ledger as o
    left join last_count as c on c.sku = o.sku and c.location = o.location
    where o.movement_type <> 'physical_count'
        and (c.sku is null or (o.occurred_at, o.event_id) > (c.occurred_at, c.event_id))
    group by o.sku, o.location
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

keys as (
    select sku, location, max(occurred_at) as last_movement_at
    from ledger
    group by sku, location
),

final as (
    select
        keys.sku,
        keys.location,
        coalesce(last_count.quantity_base, 0) + coalesce(after_count.delta, 0) as on_hand_quantity,
        coalesce(in_transit.in_transit_quantity, 0) as in_transit_quantity,
        last_count.occurred_at as last_counted_at,
        keys.last_movement_at
    from keys
    left join last_count on last_count.sku = keys.sku and last_count.location = keys.location
    left join after_count on after_count.sku = keys.sku and after_count.location = keys.location
    left join in_transit on in_transit.sku = keys.sku and in_transit.location = keys.location
)

select * from final
