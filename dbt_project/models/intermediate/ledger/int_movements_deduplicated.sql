-- One physical event reported by two *different* sources (say, a goods receipt in the ERP file and
-- in the WMS change feed, both naming the same document in `reference`) counts once: the source whose
-- report carries a unit cost wins, then the one loaded first. Rows from one source are never merged
-- with each other: each is its own event.
-- With var ledger_incremental, a build ranks again only the groups of reports that rows mapped since its last
-- build join, and keeps every other row (macros/ledger.sql).
-- Indexes (post_hook): the stamps the models that follow it catch up from; the duplicate key (ranking again);
-- (sku, occurred_at) and, on transfers and returns, (sku, reference): an incremental valuation reads a SKU's rows
-- after a checkpoint, and the pairs and returns that reach across it, through them.
-- depends_on: {{ ref('int_movements_mapped') }}
{{ config(**ledger_config(
    pre_hook=["{{ incremental_lock(ref('int_movements_mapped')) }}", "{{ ledger_begin_stamp('ledgered_at') }}", "{{ ledger_dedup_catch_up() }}"],
    post_hook=[
        "{{ index_once(['mapped_at']) }}",
        "{{ index_once(['ledgered_at']) }}",
        "{{ index_once(['movement_type'], where=\"movement_type = 'receipt' AND unit_cost_base IS NULL\") }}",
        "{{ index_once(['sku', 'location', 'movement_type', ledger_duplicate_key()], match='%COALESCE(reference%') }}",
        "{{ index_once(['sku', 'occurred_at']) }}",
        "{{ index_once(['sku', 'reference'], where=\"movement_type IN ('transfer_out', 'transfer_in', 'customer_return', 'vendor_return') AND reference IS NOT NULL\") }}",
    ],
)) }}
with converted as (
    {%- if is_incremental() %}
    select * from {{ ref('int_movements_converted') }}
    where {{ ledger_deduplicated_after() }} = '-infinity'
    union all
    select converted.* from {{ ref('int_movements_converted') }} as converted
    inner join (
        {{ ledger_changed_groups(ref('int_movements_mapped'), ledger_deduplicated_after()) }}
    ) as changed
        on (changed.sku, changed.location, changed.movement_type, changed.duplicate_key)
        = (converted.sku, converted.location, converted.movement_type, {{ ledger_duplicate_key('converted') }})
    where {{ ledger_deduplicated_after() }} > '-infinity'
    {%- else %}
    select * from {{ ref('int_movements_converted') }}
    {%- endif %}
),

ranked as (
    select
        converted.*,
        first_value(source_name) over (
            partition by
                sku, location, movement_type, quantity_base,
                {{ ledger_duplicate_key() }}
            order by (unit_cost_base is null), loaded_at, source_name
        ) as winning_source
    from converted
),

final as (
    select
        ranked.*,
        source_name = winning_source as is_reported_first,
        -- when the ledger (re)wrote the row: what fct_stock_movements follows (macros/ledger.sql)
        {{ ledger_stamp('ledgered_at') }} as ledgered_at
    from ranked
)

select * from final
