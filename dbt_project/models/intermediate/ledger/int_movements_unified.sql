-- The unified ledger: one row per physical movement (see int_movements_deduplicated). A receipt that
-- no source reports with a cost is held back (quarantined as receipt_without_cost) until one does.
-- A view over int_movements_deduplicated (as a table it wrote the whole ledger again on every build). One select,
-- no CTEs: through a view's CTE PostgreSQL does not look rows up by index.
{{ config(materialized='view') }}
select
    source_name || ':' || event_id as movement_id,
    source_name,
    event_id,
    channel,
    occurred_at,
    sku,
    location,
    movement_type,
    quantity_base,
    unit_cost_base,
    currency,
    reference,
    quantity_source,
    uom_source,
    factor_to_base,
    loaded_at,
    ledgered_at
from {{ ref('int_movements_deduplicated') }}
where is_reported_first
    and not (movement_type = 'receipt' and unit_cost_base is null)
