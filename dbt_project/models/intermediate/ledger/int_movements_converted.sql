-- The one place units of measure are converted: quantity × factor, unit cost ÷ factor, exact numeric.
-- A view (as a table it wrote and read the whole ledger once more on every build): int_movements_deduplicated reads
-- through it either everything or only the groups an incremental build ranks again (macros/ledger.sql). One
-- select, no CTEs: through a view's CTE PostgreSQL 18 does not look rows up by index (each group would read the
-- whole table).
{{ config(materialized='view') }}
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
    loaded_at,
    mapped_at
from {{ ref('int_movements_mapped') }}
where quarantine_reason is null
