-- The one ordered valuation pass (DESIGN §7): puts every SKU's movements in valuation order, resolves
-- references to positions in that order, and posts them through the valuation engine
-- (macros/valuation), both methods at once. Output is tagged by `entry_kind`: `movement` (one per
-- movement, FIFO and AVCO side by side), `cost_line` (cost-of-goods lineage) and `open_layer`.
--
-- Incremental: a SKU is re-valued, whole history, when the fingerprint of its ledger rows changed
-- since the last build (new or late events, re-mapped or re-converted rows, a winning duplicate
-- replaced); other SKUs keep their rows. A back-dated event changes everything after it, and whole-SKU
-- re-valuation makes that exactly what a full refresh gives. SKUs that left the ledger are deleted.
-- Opt in with var valuation_incremental: dbt-postgres builds increments through a temporary table, which
-- needs the TEMPORARY privilege on the database; without the var the model is a plain table.
-- depends_on: {{ ref('int_valuation_functions_created') }}
{{
    config(
        materialized=('incremental' if var('valuation_incremental', false) else 'table'),
        incremental_strategy='delete+insert',
        unique_key='sku',
        on_schema_change='fail',
        pre_hook="{{ create_valuation_functions() }}",
        post_hook=(
            ["delete from {{ this }} as t where not exists (select 1 from {{ ref('int_movements_unified') }} as u where u.sku = t.sku)"]
            if var('valuation_incremental', false) else []
        ),
    )
}}

with ledger as (
    select * from {{ ref('int_movements_unified') }}
),

-- What the valuation of a SKU depends on, summarised: row count and an order-independent hash sum
-- (only needed, and only paid for, when building incrementally).
fingerprints as (
    select
        sku,
        {% if var('valuation_incremental', false) -%}
        count(*)::text || ':' || sum(hashtextextended(concat_ws(
            '|', movement_id, extract(epoch from occurred_at)::text, location, movement_type,
            quantity_base::text, coalesce(unit_cost_base::text, '-'), coalesce(reference, '-')
        ), 0)::numeric)::text as sku_fingerprint
        {%- else -%}
        null::text as sku_fingerprint
        {%- endif %}
    from ledger
    group by sku
),

{% if is_incremental() %}
valued_before as (
    select sku, sku_fingerprint
    from {{ this }}
    where entry_kind = 'movement' and valuation_sequence = 1
),

{% endif %}
movements as (
    select ledger.*
    from ledger
    {%- if is_incremental() %}
    where ledger.sku in (
        select fingerprints.sku
        from fingerprints
        left join valued_before on valued_before.sku = fingerprints.sku
        where valued_before.sku_fingerprint is distinct from fingerprints.sku_fingerprint
    )
    {%- endif %}
),

-- The pair of a transfer is the SKU's first transfer_out carrying its reference: first in a window
-- over (sku, reference) that puts transfer_outs first.
paired as (
    select
        movements.*,
        first_value(movement_type) over pair as pair_movement_type,
        first_value(occurred_at) over pair as pair_occurred_at,
        first_value(event_id) over pair as pair_event_id,
        first_value(source_name) over pair as pair_source_name
    from movements
    window pair as (
        partition by sku, reference
        order by movement_type <> 'transfer_out', occurred_at, event_id collate "C", source_name collate "C"
    )
),

-- a transfer_in that would come before its transfer_out is valued directly after it
order_keys as (
    select
        paired.*,
        is_moved_after_pair,
        case when is_moved_after_pair then pair_occurred_at else occurred_at end as order_at,
        case when is_moved_after_pair then pair_event_id else event_id end as order_event_id,
        case when is_moved_after_pair then pair_source_name else source_name end as order_source_name
    from paired
    cross join lateral (
        select
            coalesce(
                paired.movement_type = 'transfer_in'
                and paired.reference is not null
                and paired.pair_movement_type = 'transfer_out'
                and (paired.occurred_at, paired.event_id collate "C", paired.source_name collate "C")
                < (paired.pair_occurred_at, paired.pair_event_id, paired.pair_source_name),
                false
            ) as is_moved_after_pair
    ) as moved
),

sequenced as (
    select
        order_keys.*,
        row_number() over (
            partition by sku
            order by
                order_at,
                order_event_id collate "C",
                order_source_name collate "C",
                is_moved_after_pair,
                case when is_moved_after_pair then event_id else '' end collate "C",
                case when is_moved_after_pair then source_name else '' end collate "C"
        )::integer as valuation_sequence
    from order_keys
),

-- References resolved to positions with window aggregates rather than self-joins (one sort each,
-- whatever the planner estimates). customer_return → sale and vendor_return → receipt by event_id
-- within the SKU, a movement of the same source first, then the earliest; a transfer → its pair's
-- first transfer_out (transfer_outs are never moved, so the first is the lowest sequence).
matched as (
    select
        sequenced.*,
        case
            when movement_type in ('sale', 'receipt') then event_id
            when movement_type in ('customer_return', 'vendor_return') then reference
        end as match_event_id
    from sequenced
),

resolved as (
    select
        matched.*,
        case movement_type
            when 'customer_return' then coalesce(
                min(valuation_sequence) filter (where movement_type = 'sale') over same_source,
                min(valuation_sequence) filter (where movement_type = 'sale') over any_source
            )
            when 'vendor_return' then coalesce(
                min(valuation_sequence) filter (where movement_type = 'receipt') over same_source,
                min(valuation_sequence) filter (where movement_type = 'receipt') over any_source
            )
        end as reference_sequence,
        case
            when movement_type in ('transfer_out', 'transfer_in') and reference is not null
                then min(valuation_sequence) filter (where movement_type = 'transfer_out') over transfer
        end as transfer_key
    from matched
    window
        same_source as (partition by sku, match_event_id, source_name),
        any_source as (partition by sku, match_event_id),
        transfer as (partition by sku, reference)
),

skus as (
    select
        sku,
        array_agg(movement_id order by valuation_sequence) as movement_ids,
        array_agg(source_name order by valuation_sequence) as source_names,
        array_agg(event_id order by valuation_sequence) as event_ids,
        array_agg(occurred_at order by valuation_sequence) as occurred_ats,
        array_agg(location order by valuation_sequence) as locations,
        array_agg(movement_type order by valuation_sequence) as movement_types,
        array_agg(quantity_base order by valuation_sequence) as quantities,
        array_agg(unit_cost_base order by valuation_sequence) as unit_costs,
        array_agg(reference_sequence order by valuation_sequence) as reference_sequences,
        array_agg(transfer_key order by valuation_sequence) as transfer_keys
    from resolved
    group by sku
),

posted as (
    select
        skus.sku,
        fingerprints.sku_fingerprint,
        entries.*
    from skus
    inner join fingerprints on fingerprints.sku = skus.sku
    cross join lateral {{ valuation_post_sku_call([
        'skus.movement_ids', 'skus.source_names', 'skus.event_ids', 'skus.occurred_ats', 'skus.locations',
        'skus.movement_types', 'skus.quantities', 'skus.unit_costs', 'skus.reference_sequences',
        'skus.transfer_keys']) }} as entries
),

final as (
    select
        entry_kind,
        sku,
        valuation_sequence,
        line_sequence,
        method,
        location,
        movement_id,
        source_name,
        event_id,
        occurred_at,
        movement_type,
        quantity_base,
        counted_quantity_base,
        balance_quantity,
        in_transit_quantity,
        fifo_unit_cost_applied,
        fifo_stock_value_change,
        fifo_revaluation_amount,
        fifo_balance_value,
        fifo_in_transit_value,
        avco_unit_cost_applied,
        avco_stock_value_change,
        avco_revaluation_amount,
        avco_balance_value,
        avco_average_unit_cost,
        avco_in_transit_value,
        cost_kind,
        issue_movement_id,
        issue_event_id,
        issue_location,
        issued_at,
        issue_movement_type,
        source_movement_id,
        source_event_id,
        source_movement_type,
        line_quantity_base,
        line_unit_cost_base,
        line_cost_amount,
        provisional_unit_cost_base,
        layer_sequence,
        case when entry_kind = 'movement' and valuation_sequence = 1 then sku_fingerprint end as sku_fingerprint
    from posted
)

select * from final
