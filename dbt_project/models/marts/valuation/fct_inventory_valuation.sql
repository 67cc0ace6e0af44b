-- Valuation of every movement by both methods (DESIGN §7): what it did to stock value at its SKU and
-- location, the revaluation it booked, and the balance after it.
-- One row per movement and method: the primary key (sku, valuation_sequence, method), added once the table is
-- written (macros/indexes.sql). It is also what a build catching up deletes a SKU's rows from a position on
-- by: with var valuation_incremental the mart catches up with the valuation's entries stamped since its last
-- build (macros/valuation/valuation_catch_up.sql), which equals a rebuild.
-- depends_on: {{ ref('int_valuation_entries_posted') }}
{{ config(**valuation_mart_config(by_position=true, post_hook=[
    "{{ add_primary_key(['sku', 'valuation_sequence', 'method']) }}"])) }}

with valued as (
    select * from {{ ref('int_movements_valued') }} as valued
    where {{ valuation_mart_increment('valued') }}
),

final as (
    select
        movement_id,
        source_name,
        event_id,
        sku,
        location,
        occurred_at,
        movement_type,
        method,
        valuation_sequence,
        quantity_base,
        counted_quantity_base,
        unit_cost_applied,
        stock_value_change,
        revaluation_amount,
        balance_quantity,
        balance_value,
        average_unit_cost,
        in_transit_quantity,
        in_transit_value,
        valued_at
    from valued
)

select * from final
