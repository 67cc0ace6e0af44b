with skus as (
    select * from {{ ref('stg_file__skus') }}
),

factors as (
    select * from {{ ref('int_uom_factors_resolved') }}
),

kits as (
    select distinct kit_sku from {{ ref('stg_file__kit_components') }}
),

units as (
    select
        sku,
        string_agg(uom || '=' || factor_to_base::text, ', ' order by factor_to_base, uom) as units_of_measure
    from factors
    group by sku
),

final as (
    select
        skus.sku,
        skus.base_uom,
        skus.description,
        coalesce(units.units_of_measure, skus.base_uom || '=1') as units_of_measure,
        kits.kit_sku is not null as is_kit
    from skus
    left join units on units.sku = skus.sku
    left join kits on kits.kit_sku = skus.sku
)

select * from final
