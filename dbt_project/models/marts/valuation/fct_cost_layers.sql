-- The FIFO cost layers still open: which receipt (or other inbound) each remaining unit's cost came
-- from, where it is, and in what order it will be consumed.
-- With var valuation_incremental it catches up with the valuation's entries stamped since its last build
-- (macros/valuation/valuation_catch_up.sql): a SKU re-valued has all its open layers written again.
{{ config(**valuation_mart_config(by_position=false)) }}

with layers as (
    select * from {{ ref('int_valuation_entries_posted') }} as entries
    where entry_kind = 'open_layer' and {{ valuation_mart_increment('entries') }}
),

final as (
    select
        sku,
        location,
        source_event_id,
        source_movement_id,
        source_movement_type,
        layer_sequence,
        line_quantity_base as quantity_remaining_base,
        line_unit_cost_base as unit_cost_base,
        line_cost_amount as layer_value,
        occurred_at as received_at,
        movement_id as received_movement_id,
        event_id as received_event_id,
        valued_at
    from layers
)

select * from final
