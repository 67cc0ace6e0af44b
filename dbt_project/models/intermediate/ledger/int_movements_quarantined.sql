-- Movements that could not be mapped or converted, with the reason; they are replayed automatically
-- on the next build once the missing reference data arrives.
select
    channel,
    source_name,
    event_id,
    occurred_at,
    channel_sku,
    channel_location,
    movement_type,
    quantity,
    uom,
    quarantine_reason,
    loaded_at
from {{ ref('int_movements_mapped') }}
where quarantine_reason is not null
