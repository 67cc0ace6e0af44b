{{ config(meta={'dagster': {'ref': {'name': 'fct_cost_of_goods'}}}) }}
-- Lineage reconciles to the ledger: per movement and method, the issue lines booked on it sum to the
-- value that left stock, and its revaluation lines to its revaluation_amount (a line booked on a movement
-- the valuation does not have fails too). Returns the movements where they differ.
--
-- In two steps, so that checking tens of millions of lines costs one scan of each mart and no table of every
-- movement (which spills to disk at 10M movements):
--   1. Per SKU and method, the amounts of both marts summed with a weight per movement, a 64-bit hash of its
--      id (exact numeric): Σ w(m) × (value(m) − lines(m)) is zero when every movement reconciles, and a
--      difference goes unseen only if the weighted differences cancel exactly, which the hash's weights
--      make as unlikely as a 64-bit hash collision.
--   2. For the SKUs and methods where a sum is not zero (none, when the marts reconcile), movement by movement.
with valuation as not materialized (
    select
        sku,
        movement_id,
        method,
        case when quantity_base < 0 then -stock_value_change else 0 end as issued_cost,
        coalesce(revaluation_amount, 0) as revaluation
    from {{ ref('fct_inventory_valuation') }}
),

lines as not materialized (
    select
        sku,
        booked_movement_id as movement_id,
        method,
        case when cost_kind <> 'revaluation' then cost_amount else 0 end as issued_cost,
        case when cost_kind = 'revaluation' then cost_amount else 0 end as revaluation
    from {{ ref('fct_cost_of_goods') }}
),

weighted as (
    select
        sku,
        method,
        sum(side * hashtextextended(movement_id, 0)::numeric * issued_cost) as issued_difference,
        sum(side * hashtextextended(movement_id, 0)::numeric * revaluation) as revaluation_difference
    from (
        select sku, method, movement_id, issued_cost, revaluation, 1 as side from valuation
        union all
        select sku, method, movement_id, issued_cost, revaluation, -1 as side from lines
    ) as both_marts
    group by sku, method
),

differing as materialized (
    select sku, method
    from weighted
    where issued_difference <> 0 or revaluation_difference <> 0
),

movement_lines as (
    select movement_id, method, sum(issued_cost) as issued_cost, sum(revaluation) as revaluation
    from lines
    where (sku, method) in (select sku, method from differing)
    group by movement_id, method
),

differing_valuation as (
    select *
    from valuation
    where (sku, method) in (select sku, method from differing)
)

select
    coalesce(differing_valuation.movement_id, movement_lines.movement_id) as movement_id,
    coalesce(differing_valuation.method, movement_lines.method) as method,
    differing_valuation.sku,
    differing_valuation.issued_cost,
    differing_valuation.revaluation,
    movement_lines.issued_cost as lines_issued_cost,
    movement_lines.revaluation as lines_revaluation
from differing_valuation
full outer join movement_lines
    on movement_lines.movement_id = differing_valuation.movement_id
    and movement_lines.method = differing_valuation.method
where coalesce(movement_lines.issued_cost, 0) <> coalesce(differing_valuation.issued_cost, 0)
    or coalesce(movement_lines.revaluation, 0) <> coalesce(differing_valuation.revaluation, 0)
