-- One row per cost line: the primary key (sku, valuation_sequence, method, line_sequence), the line's place in
-- its SKU's valuation, added once the table is written (macros/indexes.sql). It is also what a build catching
-- up deletes a SKU's lines from a position on by: with var valuation_incremental the mart catches up with the
-- valuation's entries stamped since its last build (macros/valuation/valuation_catch_up.sql), which equals a
-- rebuild.
{{ config(**valuation_mart_config(by_position=true, post_hook=[
    "{{ add_primary_key(['sku', 'valuation_sequence', 'method', 'line_sequence']) }}"])) }}
-- Cost-of-goods lineage: every issue split into the cost it carried (FIFO: per layer consumed, and
-- provisional cost beyond the layers; AVCO: one line at the average), plus the revaluations booked when
-- negative stock was settled, each tied to the issue it corrects (FIFO) or the settling movement (AVCO).
with lines as (
    select * from {{ ref('int_valuation_entries_posted') }} as entries
    where entry_kind = 'cost_line' and {{ valuation_mart_increment('entries') }}
),

final as (
    select
        movement_id || ':' || method || ':' || line_sequence as cost_line_id,
        issue_movement_id,
        issue_event_id,
        sku,
        issue_location as location,
        issued_at,
        issue_movement_type as movement_type,
        method,
        cost_kind,
        source_movement_id,
        source_event_id,
        line_quantity_base as quantity_base,
        line_unit_cost_base as unit_cost_base,
        line_cost_amount as cost_amount,
        provisional_unit_cost_base,
        movement_id as booked_movement_id,
        event_id as booked_event_id,
        occurred_at as booked_at,
        valuation_sequence,
        line_sequence,
        valued_at
    from lines
)

select * from final
