-- The one ordered valuation pass (DESIGN §7): puts every SKU's movements in valuation order, resolves
-- references, and posts them through the valuation engine (macros/valuation), both methods at once.
-- Output is tagged by `entry_kind`: `movement` (one per movement, FIFO and AVCO side by side),
-- `cost_line` (cost-of-goods lineage) and `open_layer`.
--
-- Performance (issue 4): one sort of the ledger, by sku and then, SKU by SKU, in valuation order. What
-- only some movements need (the pair of a transfer, the movement a return references) is found among
-- those movements alone and brought in by small joins, never by another pass over every movement.
--
-- Incremental: a SKU is re-valued, whole history, when the fingerprint of its ledger rows changed
-- since the last build (new or late events, re-mapped or re-converted rows, a winning duplicate
-- replaced); other SKUs keep their rows. A back-dated event changes everything after it, and whole-SKU
-- re-valuation makes that exactly what a full refresh gives. SKUs that left the ledger are deleted (by an
-- increment: a full build has none).
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
            ["{% if is_incremental() %}delete from {{ this }} as t where not exists (select 1 from {{ ref('int_movements_unified') }} as u where u.sku = t.sku){% endif %}"]
            if var('valuation_incremental', false) else []
        ),
    )
}}

{#- What the valuation of a SKU depends on, summarised: row count and an order-independent hash sum
    (only needed, and only paid for, when building incrementally). sum(bigint) is exact: it returns numeric. -#}
{%- set sku_fingerprint -%}
    {%- if var('valuation_incremental', false) -%}
        count(*)::text || ':' || sum(hashtextextended(concat_ws(
            '|', movement_id, extract(epoch from occurred_at)::text, location, movement_type,
            quantity_base::text, coalesce(unit_cost_base::text, '-'), coalesce(reference, '-')
        ), 0))::text
    {%- else -%}
        null::text
    {%- endif -%}
{%- endset -%}

{#- Valuation order within a SKU (rule 2): occurred_at, event_id, source_name by code point, except that a
    transfer_in that would come before its pair's transfer_out is valued directly after it (several such
    keep their own event_id order). -#}
{%- set valuation_order -%}
    order_at, order_event_id collate "C", order_source_name collate "C", is_moved_after_pair,
            moved_event_id collate "C", moved_source_name collate "C"
{%- endset -%}

with ledger as (
    select * from {{ ref('int_movements_unified') }}
),

{% if is_incremental() %}
fingerprints as (
    select
        sku,
        {{ sku_fingerprint }} as sku_fingerprint
    from ledger
    group by sku
),

valued_before as (
    select sku, sku_fingerprint
    from {{ this }}
    where entry_kind = 'movement' and valuation_sequence = 1
),

{% endif %}
-- Read by each CTE below with its own filter, rather than stored once for all of them.
movements as not materialized (
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

-- Transfers carrying a reference, with their pair: the SKU's first transfer_out with that reference,
-- first in a window over (sku, reference) that puts transfer_outs first (transfer_outs are never moved,
-- so this is their valuation order). pair_number numbers the (sku, reference) groups: for the engine it
-- only names the pair's in-transit pool.
transfer_windows as (
    select
        sku, movement_id, source_name, event_id, occurred_at, location, movement_type, quantity_base,
        unit_cost_base, reference,
        first_value(movement_type) over pair as pair_movement_type,
        first_value(occurred_at) over pair as pair_occurred_at,
        first_value(event_id) over pair as pair_event_id,
        first_value(source_name) over pair as pair_source_name,
        dense_rank() over (partition by sku order by reference) as pair_number
    from movements
    where movement_type in ('transfer_out', 'transfer_in') and reference is not null
    window pair as (
        partition by sku, reference
        order by movement_type <> 'transfer_out', occurred_at, event_id collate "C", source_name collate "C"
    )
),

transfers as (
    select
        transfer_windows.*,
        case when pair_movement_type = 'transfer_out' then pair_number end::integer as transfer_key,
        coalesce(
            movement_type = 'transfer_in'
            and pair_movement_type = 'transfer_out'
            and (occurred_at, event_id collate "C", source_name collate "C")
            < (pair_occurred_at, pair_event_id, pair_source_name),
            false
        ) as is_moved_after_pair
    from transfer_windows
),

-- customer_return → sale and vendor_return → receipt, by event_id within the SKU: a movement of the same
-- source first, then the earliest in valuation order; it counts only if valued before the return. Sales
-- and receipts are never moved, so "earliest" is "first valued", and the engine, meeting them in
-- valuation order, finds it by itself given two group numbers (within the SKU, and only on the
-- movements concerned): match_group for (kind, event_id), match_source_group for (kind, event_id,
-- source_name), where a return counts as the kind it references and by its reference (a group is named by
-- its first row in one sort of these movements). A return gets a match_source_group only when its own
-- source has a candidate (which then wins, valued before it or not). Windows over one sort, no join: no
-- plan here depends on statistics (a freshly built ledger has none).
matchable as (
    select
        sku, movement_id, source_name, event_id, occurred_at, location, movement_type, quantity_base,
        unit_cost_base, reference,
        movement_type in ('customer_return', 'vendor_return') as is_return,
        case when movement_type in ('sale', 'customer_return') then 'sale' else 'receipt' end as match_kind,
        case when movement_type in ('sale', 'receipt') then event_id else reference end as match_event_id
    from movements
    where movement_type in ('sale', 'receipt', 'customer_return', 'vendor_return')
),

matched as (
    select
        numbered.*,
        count(*) filter (where is_return) over match as returns_in_group,
        min(match_row) over match as match_number,
        count(*) filter (where not is_return) over match_source as candidates_of_source,
        min(match_row) over match_source as match_source_number
    from (
        select
            matchable.*,
            row_number() over (
                partition by sku order by match_kind, match_event_id collate "C", source_name collate "C"
            )::integer as match_row
        from matchable
    ) as numbered
    window
        match as (partition by sku, match_kind, match_event_id collate "C"),
        match_source as (partition by sku, match_kind, match_event_id collate "C", source_name collate "C")
),

-- Every movement once, with what the engine needs beyond its ledger row: transfers from `transfers`,
-- sales, receipts and returns from `matched` (group numbers only where a return is concerned), the rest
-- as they are. Rows keep their own (occurred_at, event_id, source_name) as order key, except a moved
-- transfer_in.
keyed as (
    select
        sku, movement_id, source_name, event_id, occurred_at, location, movement_type, quantity_base,
        unit_cost_base, reference,
        null::integer as transfer_key,
        null::integer as match_group,
        null::integer as match_source_group,
        false as is_moved_after_pair,
        occurred_at as order_at,
        event_id as order_event_id,
        source_name as order_source_name,
        '' as moved_event_id,
        '' as moved_source_name
    from movements
    where not coalesce(
        movement_type in ('transfer_out', 'transfer_in') and reference is not null
        or movement_type in ('sale', 'receipt', 'customer_return', 'vendor_return'),
        false
    )

    union all

    select
        sku, movement_id, source_name, event_id, occurred_at, location, movement_type, quantity_base,
        unit_cost_base, reference,
        transfer_key,
        null,
        null,
        is_moved_after_pair,
        case when is_moved_after_pair then pair_occurred_at else occurred_at end,
        case when is_moved_after_pair then pair_event_id else event_id end,
        case when is_moved_after_pair then pair_source_name else source_name end,
        case when is_moved_after_pair then event_id else '' end,
        case when is_moved_after_pair then source_name else '' end
    from transfers

    union all

    select
        sku, movement_id, source_name, event_id, occurred_at, location, movement_type, quantity_base,
        unit_cost_base, reference,
        null,
        case when is_return or returns_in_group > 0 then match_number end,
        case
            when is_return then case when candidates_of_source > 0 then match_source_number end
            when returns_in_group > 0 then match_source_number
        end,
        false,
        occurred_at,
        event_id,
        source_name,
        '',
        ''
    from matched
),

-- Every array in valuation order (index = valuation_sequence).
skus as (
    select
        sku,
        array_agg(movement_id order by {{ valuation_order }}) as movement_ids,
        array_agg(source_name order by {{ valuation_order }}) as source_names,
        array_agg(event_id order by {{ valuation_order }}) as event_ids,
        array_agg(occurred_at order by {{ valuation_order }}) as occurred_ats,
        array_agg(location order by {{ valuation_order }}) as locations,
        array_agg(movement_type order by {{ valuation_order }}) as movement_types,
        array_agg(quantity_base order by {{ valuation_order }}) as quantities,
        array_agg(unit_cost_base order by {{ valuation_order }}) as unit_costs,
        array_agg(match_group order by {{ valuation_order }}) as match_groups,
        array_agg(match_source_group order by {{ valuation_order }}) as match_source_groups,
        array_agg(transfer_key order by {{ valuation_order }}) as transfer_keys,
        {{ sku_fingerprint }} as sku_fingerprint
    -- sorted by sku first, so that each SKU's movements are then put in order on their own (an incremental
    -- sort of ~1,000 rows at a time rather than one sort of the whole ledger)
    from (select * from keyed order by sku) as keyed
    group by sku
),

posted as (
    select
        skus.sku,
        skus.sku_fingerprint,
        entries.*
    from skus
    cross join lateral {{ valuation_post_sku_call([
        'skus.movement_ids', 'skus.source_names', 'skus.event_ids', 'skus.occurred_ats', 'skus.locations',
        'skus.movement_types', 'skus.quantities', 'skus.unit_costs', 'skus.match_groups',
        'skus.match_source_groups', 'skus.transfer_keys']) }} as entries
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
