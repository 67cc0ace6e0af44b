-- One physical event reported by two *different* sources (say, a goods receipt in the ERP file and
-- in the WMS change feed, both naming the same document in `reference`) counts once: the source whose
-- report carries a unit cost wins, then the one loaded first. Rows from one source are never merged
-- with each other: each is its own event.
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
        ranked.*,
        source_name = winning_source as is_reported_first
    from ranked
)

select * from final
