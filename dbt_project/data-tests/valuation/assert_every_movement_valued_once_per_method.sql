{{ config(meta={'dagster': {'ref': {'name': 'fct_inventory_valuation'}}}) }}
-- Every movement of the ledger is valued exactly once by each method: one row per movement and method in
-- fct_inventory_valuation (so the pair is unique), and none for a movement the ledger does not have.
-- Returns the movements and methods with another number of rows.
--
-- In two steps, as assert_cost_lines_reconcile_with_valuation, so that it costs one scan of the valuation and
-- one of the ledger, not a table of every movement:
--   1. Per SKU and method, the number of rows and the sum of a 64-bit hash of their movement ids, against the
--      ledger's. A movement valued twice, or not at all, changes the count; a missing one and another doubled
--      would have to have equal hashes to go unseen.
--   2. For the SKUs and methods where either differs, movement by movement.
with valuation as not materialized (
    select sku, movement_id, method
    from {{ ref('fct_inventory_valuation') }}
),

expected as not materialized (
    select ledger.sku, ledger.movement_id, methods.method
    from {{ ref('int_movements_unified') }} as ledger
    cross join (values ('fifo'), ('avco')) as methods (method)
),

counted as (
    select
        sku,
        method,
        sum(side) as row_difference,
        sum(side * hashtextextended(movement_id, 0)::numeric) as hash_difference
    from (
        select sku, movement_id, method, 1 as side from valuation
        union all
        select sku, movement_id, method, -1 as side from expected
    ) as both_sides
    group by sku, method
),

differing as materialized (
    select sku, method
    from counted
    where row_difference <> 0 or hash_difference <> 0
),

valued as (
    select movement_id, method, count(*) as valuation_rows
    from valuation
    where (sku, method) in (select sku, method from differing)
    group by movement_id, method
),

in_ledger as (
    select movement_id, method
    from expected
    where (sku, method) in (select sku, method from differing)
)

select
    coalesce(valued.movement_id, in_ledger.movement_id) as movement_id,
    coalesce(valued.method, in_ledger.method) as method,
    coalesce(valued.valuation_rows, 0) as valuation_rows,
    in_ledger.movement_id is not null as in_ledger
from valued
full outer join in_ledger on in_ledger.movement_id = valued.movement_id and in_ledger.method = valued.method
where coalesce(valued.valuation_rows, 0) <> 1 or in_ledger.movement_id is null
