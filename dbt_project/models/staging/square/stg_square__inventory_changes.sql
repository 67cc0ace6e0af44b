-- Square inventory changes in the canonical movement shape (DESIGN §5); the mapping is documented
-- in _square__models.yml. Physical stock is IN_STOCK plus RESERVED_FOR_SALE: an adjustment into
-- that set is inbound (+), out of it outbound (-), within or outside it 0. A TRANSFER becomes two
-- rows, `<id>:out` at the sending and `<id>:in` at the receiving location.
{%- set number = "'^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'" %}
{%- set timestamp = "'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$'" %}
{%- set physical = "('IN_STOCK', 'RESERVED_FOR_SALE')" %}
{%- set transfer_prefix = var('square_transfer_reference_prefix', 'TR-') %}
{%- set zero_decimal_currencies = "('BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF')" %}

with source as (
    select * from {{ source('square', 'square_inventory_changes') }}
),

changes as (
    select
        source_id,
        loaded_at,
        batch_id,
        payload ->> 'type' as change_type,
        payload -> lower(payload ->> 'type') as change
    from source
),

extracted as (
    select
        source_id,
        loaded_at,
        batch_id,
        change_type,
        change ->> 'id' as change_id,
        change ->> 'occurred_at' as occurred_text,
        change ->> 'catalog_object_id' as channel_sku,
        change ->> 'location_id' as location_id,
        change ->> 'from_location_id' as from_location_id,
        change ->> 'to_location_id' as to_location_id,
        change ->> 'from_state' as from_state,
        change ->> 'to_state' as to_state,
        change ->> 'quantity' as quantity_text,
        change -> 'total_price_money' ->> 'amount' as amount_text,
        change -> 'total_price_money' ->> 'currency' as currency,
        nullif(change ->> 'reference_id', '') as reference_id,
        coalesce(change ->> 'purchase_order_id', change ->> 'goods_receipt_id') as vendor_document,
        coalesce(change ->> 'transaction_id', change ->> 'refund_id') as sales_document
    from changes
),

typed as not materialized (
    select
        *,
        case when quantity_text ~ {{ number }} then quantity_text::numeric end as quantity_abs,
        case when amount_text ~ {{ number }} then amount_text::numeric end as amount_minor,
        case when occurred_text ~ {{ timestamp }} then occurred_text::timestamptz end as occurred_at,
        coalesce(reference_id like '{{ transfer_prefix }}%', false) as is_transfer_reference
    from extracted
),

adjustments as (
    select
        *,
        from_state in {{ physical }} as from_physical,
        to_state in {{ physical }} as to_physical
    from typed
    where change_type is distinct from 'TRANSFER'
),

classified as (
    select
        source_id as event_id,
        occurred_at,
        channel_sku,
        location_id as channel_location,
        case
            when change_type = 'PHYSICAL_COUNT' then 'physical_count'
            -- A change type Square may add later: kept, and quarantined downstream by its type.
            when change_type is distinct from 'ADJUSTMENT' then 'unrecognized_change_type'
            when from_physical and to_state in ('SOLD', 'SOLD_ONLINE') then 'sale'
            when to_physical and from_state in ('RETURNED_BY_CUSTOMER', 'UNLINKED_RETURN', 'SOLD') then 'customer_return'
            when from_physical and to_state = 'WASTE' then 'damage'
            when to_physical and (from_state in ('RECEIVED_FROM_VENDOR', 'ORDERED_FROM_VENDOR')
                or (from_state = 'NONE' and vendor_document is not null)) then 'receipt'
            when from_physical and to_state = 'NONE' and vendor_document is not null then 'vendor_return'
            when to_physical and (from_state like 'IN_TRANSIT%' or (from_state = 'NONE' and is_transfer_reference))
                then 'transfer_in'
            when from_physical and (to_state like 'IN_TRANSIT%' or (to_state = 'NONE' and is_transfer_reference))
                then 'transfer_out'
            else 'adjustment'
        end as movement_type,
        case
            when change_type = 'PHYSICAL_COUNT' then quantity_abs
            when to_physical and not from_physical then quantity_abs
            when from_physical and not to_physical then -quantity_abs
            else 0
        end as quantity,
        amount_minor,
        quantity_abs,
        currency,
        coalesce(reference_id, vendor_document, sales_document) as reference,
        loaded_at,
        batch_id
    from adjustments
),

transfers as (
    select
        source_id || ':' || side.direction as event_id,
        occurred_at,
        channel_sku,
        case when side.direction = 'out' then from_location_id else to_location_id end as channel_location,
        'transfer_' || side.direction as movement_type,
        case when side.direction = 'out' then -quantity_abs else quantity_abs end as quantity,
        amount_minor,
        quantity_abs,
        currency,
        coalesce(reference_id, change_id) as reference,
        loaded_at,
        batch_id
    from typed
    cross join (values ('out'), ('in')) as side (direction)
    where change_type = 'TRANSFER'
),

unioned as (
    select * from classified
    union all
    select * from transfers
),

final as (
    select
        'square' as channel,
        'square' as source_name,
        event_id,
        occurred_at,
        channel_sku,
        channel_location,
        movement_type,
        quantity,
        -- Square counts the variation's sellable unit.
        'EA' as uom,
        -- Square money is in the currency's smallest unit; the cost is per counted unit.
        amount_minor
            / case when currency in {{ zero_decimal_currencies }} then 1 else 100 end
            / nullif(quantity_abs, 0) as unit_cost,
        currency,
        reference,
        loaded_at,
        batch_id
    from unioned
)

select * from final
