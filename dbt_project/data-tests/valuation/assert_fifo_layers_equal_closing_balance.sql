{{ config(meta={'dagster': {'ref': {'name': 'fct_cost_layers'}}}) }}
-- I-8 (FIFO): at every SKU and location the open layers hold exactly the closing quantity and value
-- (none when the position is zero or negative). Returns the positions where they differ.
-- The closing row of a position is its last (highest valuation_sequence): taken as the greatest
-- [valuation_sequence, balance_quantity, balance_value] per position, one pass with no sort of the valuation.
with closing as (
    select sku, location, latest[2] as balance_quantity, latest[3] as balance_value
    from (
        select sku, location, max(array[valuation_sequence, balance_quantity, balance_value]) as latest
        from {{ ref('fct_inventory_valuation') }}
        where method = 'fifo'
        group by sku, location
    ) as last_rows
),

layers as (
    select sku, location, sum(quantity_remaining_base) as layer_quantity, sum(layer_value) as layer_value
    from {{ ref('fct_cost_layers') }}
    group by sku, location
)

select closing.*, layers.layer_quantity, layers.layer_value
from closing
full outer join layers on layers.sku = closing.sku and layers.location = closing.location
where coalesce(layers.layer_quantity, 0) <> greatest(coalesce(closing.balance_quantity, 0), 0)
    or (coalesce(closing.balance_quantity, 0) >= 0 and coalesce(layers.layer_value, 0) <> coalesce(closing.balance_value, 0))
