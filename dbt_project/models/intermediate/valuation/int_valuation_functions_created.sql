-- The valuation engine's database functions, as installed by this model's pre_hook. It exists so the
-- functions are in place before anything that calls them runs, including the dbt unit tests of
-- int_valuation_entries_posted, which `dbt build` runs before building that model.
{{
    config(
        materialized='view',
        pre_hook="{{ create_valuation_functions() }}",
    )
}}

with functions as (
    select
        pg_proc.proname::text as function_name,
        pg_get_function_identity_arguments(pg_proc.oid) as function_arguments
    from pg_catalog.pg_proc
    inner join pg_catalog.pg_namespace on pg_namespace.oid = pg_proc.pronamespace
    where pg_namespace.nspname = '{{ valuation_schema() }}'
        and pg_proc.proname in ('valuation_post_sku', 'valuation_divide')
),

final as (
    select * from functions
)

select * from final
