-- ShipHero inventory changes in the canonical movement shape (DESIGN §5); the reason mapping is
-- documented in _shiphero__models.yml. ShipHero's `reason` is free text: the patterns below are the
-- texts the WMS writes for each kind of event; anything else is an adjustment that keeps its reason
-- as reference. Timestamps without a zone are UTC (ShipHero's contract).
{%- set number = "'^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'" %}
{%- set timestamp = "'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$'" %}

with source as (
    select * from {{ source('shiphero', 'shiphero_inventory_changes') }}
),

extracted as (
    select
        source_id,
        loaded_at,
        batch_id,
        payload ->> 'sku' as channel_sku,
        payload ->> 'warehouse_id' as channel_location,
        payload ->> 'created_at' as created_text,
        payload ->> 'previous_on_hand' as previous_text,
        payload ->> 'change_in_on_hand' as change_text,
        coalesce(payload ->> 'reason', '') as reason,
        coalesce((payload ->> 'cycle_counted') = 'true', false) as is_cycle_counted
    from source
),

typed as (
    select
        *,
        case
            when created_text !~ {{ timestamp }} then null
            when created_text ~ '(Z|[+-][0-9]{2}(:?[0-9]{2})?)$' then created_text::timestamptz
            else created_text::timestamp at time zone 'UTC'
        end as occurred_at,
        case when previous_text ~ {{ number }} then previous_text::numeric end as previous_on_hand,
        case when change_text ~ {{ number }} then change_text::numeric end as change_in_on_hand
    from extracted
),

classified as (
    select
        *,
        case
            when is_cycle_counted or reason ~* '^cycle count' then 'physical_count'
            when reason ~* '^PO \S+ received' then 'receipt'
            when reason ~* '^returned to vendor' then 'vendor_return'
            when reason ~* '^order \S+ shipped' then 'sale'
            when reason ~* '^return for ' then 'customer_return'
            when reason ~* '^transfer \S+ shipped' then 'transfer_out'
            when reason ~* '^transfer \S+ received' then 'transfer_in'
            when reason ~* '^damaged' then 'damage'
            else 'adjustment'
        end as movement_type,
        coalesce(
            substring(reason from '(?i)^PO (\S+) received'),
            substring(reason from '(?i)^returned to vendor.* for receipt (\S+)'),
            substring(reason from '(?i)^order (\S+) shipped'),
            substring(reason from '(?i)^return for (\S+)'),
            substring(reason from '(?i)^transfer (\S+) (?:shipped|received)'),
            substring(reason from '(?i)^(?:damaged|cycle count|manual adjustment) (\S+)'),
            nullif(reason, '')
        ) as reference
    from typed
),

final as (
    select
        'shiphero' as channel,
        'shiphero' as source_name,
        source_id as event_id,
        occurred_at,
        channel_sku,
        channel_location,
        movement_type,
        -- A count reports the counted level, every other change its signed delta.
        case
            when movement_type = 'physical_count' then previous_on_hand + change_in_on_hand
            else change_in_on_hand
        end as quantity,
        'EA' as uom,
        cast(null as numeric) as unit_cost,
        cast(null as text) as currency,
        reference,
        loaded_at,
        batch_id
    from classified
)

select * from final
