-- The unified ledger: one row per physical movement. A physical event reported by two *different*
-- sources (say, a goods receipt in the ERP file and in the WMS change feed, both naming the same receipt
-- document in `reference`) counts once: the source whose report carries a unit cost wins, then the one
-- loaded first. Rows from one source are never merged with each other: each is its own event.
with converted as (
    select * from {{ ref('int_movements_converted') }}
),

ranked as (
    select
        converted.*,
        first_value(source_name) over (
            partition by
                sku, location, movement_type, quantity_base,
                coalesce(reference, source_name || ':' || event_id)
            order by (unit_cost_base is null), loaded_at, source_name
        ) as winning_source
    from converted
),

final as (
    select
        source_name || ':' || event_id as movement_id,
        source_name,
        event_id,
        channel,
        occurred_at,
        sku,
        location,
        movement_type,
        quantity_base,
        unit_cost_base,
        currency,
        reference,
        quantity_source,
        uom_source,
        factor_to_base,
        loaded_at
    from ranked
    where source_name = winning_source
)

select * from final
