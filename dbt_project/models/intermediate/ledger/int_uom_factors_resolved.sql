-- Every (sku, uom) with its exact factor to the SKU's base unit: the base unit itself (factor 1),
-- SKU-specific conversions, and conversions that apply to all SKUs (empty sku); SKU-specific wins.
with skus as (
    select * from {{ ref('stg_file__skus') }}
),

conversions as (
    select * from {{ ref('stg_file__uom_conversions') }}
),

base_units as (
    select sku, base_uom as uom, 1::numeric as factor_to_base, 0 as precedence
    from skus
),

specific as (
    select c.sku, c.uom, c.factor_to_base, 1 as precedence
    from conversions as c
    inner join skus as s on s.sku = c.sku
),

global_conversions as (
    select s.sku, c.uom, c.factor_to_base, 2 as precedence
    from conversions as c
    cross join skus as s
    where c.sku is null
),

candidates as (
    select * from base_units
    union all
    select * from specific
    union all
    select * from global_conversions
),

final as (
    select distinct on (sku, uom)
        sku,
        uom,
        factor_to_base
    from candidates
    order by sku, uom, precedence
)

select * from final
