-- One row per movement and valuation method: the `movement` entries of the valuation pass, FIFO and
-- AVCO unpivoted. Quantities are the same for both methods; values, unit costs and revaluations differ.
{{ config(materialized='view') }}

with entries as (
    select * from {{ ref('int_valuation_entries_posted') }}
    where entry_kind = 'movement'
),

unpivoted as (
    select
        entries.movement_id,
        entries.source_name,
        entries.event_id,
        entries.sku,
        entries.location,
        entries.occurred_at,
        entries.movement_type,
        methods.method,
        entries.valuation_sequence,
        entries.quantity_base,
        entries.counted_quantity_base,
        methods.unit_cost_applied,
        methods.stock_value_change,
        methods.revaluation_amount,
        entries.balance_quantity,
        methods.balance_value,
        methods.average_unit_cost,
        entries.in_transit_quantity,
        methods.in_transit_value,
        entries.valued_at
    from entries
    cross join lateral (
        values
            (
                'fifo', entries.fifo_unit_cost_applied, entries.fifo_stock_value_change,
                entries.fifo_revaluation_amount, entries.fifo_balance_value, null::numeric,
                entries.fifo_in_transit_value
            ),
            (
                'avco', entries.avco_unit_cost_applied, entries.avco_stock_value_change,
                entries.avco_revaluation_amount, entries.avco_balance_value, entries.avco_average_unit_cost,
                entries.avco_in_transit_value
            )
    ) as methods (
        method, unit_cost_applied, stock_value_change, revaluation_amount, balance_value, average_unit_cost,
        in_transit_value
    )
),

final as (
    select * from unpivoted
)

select * from final
