{{ config(meta={'dagster': {'ref': {'name': 'fct_cost_of_goods'}}}) }}
-- Lineage reconciles to the ledger: per movement and method, the issue lines booked on it sum to the
-- value that left stock, and its revaluation lines to its revaluation_amount.
with lines as (
    select
        booked_movement_id as movement_id,
        method,
        sum(case when cost_kind <> 'revaluation' then cost_amount else 0 end) as issued_cost,
        sum(case when cost_kind = 'revaluation' then cost_amount else 0 end) as revaluation
    from {{ ref('fct_cost_of_goods') }}
    group by booked_movement_id, method
),

valuation as (
    select
        movement_id,
        method,
        case when quantity_base < 0 then -stock_value_change else 0 end as issued_cost,
        revaluation_amount as revaluation
    from {{ ref('fct_inventory_valuation') }}
)

select valuation.*, lines.issued_cost as lines_issued_cost, lines.revaluation as lines_revaluation
from valuation
left join lines on lines.movement_id = valuation.movement_id and lines.method = valuation.method
where coalesce(lines.issued_cost, 0) <> valuation.issued_cost
    or coalesce(lines.revaluation, 0) <> valuation.revaluation
