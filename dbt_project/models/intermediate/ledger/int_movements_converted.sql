-- The one place units of measure are converted: quantity × factor, unit cost ÷ factor, exact numeric.
-- Ephemeral: inlined into int_movements_deduplicated, its only reader (as a table it wrote and read the whole ledger
-- once more on every build).
{{ config(materialized='ephemeral') }}
with mapped as (
    select * from {{ ref('int_movements_mapped') }}
    where quarantine_reason is null
),

converted as (
    select
        channel,
        source_name,
        event_id,
        occurred_at,
        sku,
        location,
        movement_type,
        quantity as quantity_source,
        uom as uom_source,
        factor_to_base,
        quantity * factor_to_base as quantity_base,
        unit_cost / factor_to_base as unit_cost_base,
        currency,
        reference,
        loaded_at
    from mapped
)

select * from converted
