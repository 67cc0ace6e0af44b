{#-
    int_stock_balances_running built incrementally (var ledger_incremental): it follows the ledger's `ledgered_at`
    (macros/ledger.sql) the way the valuation marts follow the valuation. Its mark is the latest `ledgered_at` among
    its rows. Per position (SKU and location) with ledger rows written since (int_movements_deduplicated: rows that
    entered the ledger, and rows that left it when their group of reports was ranked again), the earliest of them
    in the position's order; the position resumes from the last balance row before it (`anchor`, itself rewritten,
    so that the latest row is always among the rows written), from the balance before the anchor: the anchor's
    balance less its quantity (a count sets the level, so nothing before it counts). Without an anchor the position
    is written whole. Those rows are deleted and the model inserts the position's rows from there. With no mark,
    or a ledger filled whole since, the table is filled whole. (After incremental_lock, its first hook.)
-#}

{% macro positions_catch_up() -%}
    {%- if is_incremental() -%}
    {%- set ledger = ref('int_movements_deduplicated') -%}
    {%- set mark, whole = incremental_mark('ledgered_at', ledger) -%}
    drop table if exists pg_temp.positions_resume;
    {%- if whole %}
    truncate {{ this }};
    create temporary table positions_resume as
    select distinct sku, location, null::timestamptz as resume_at, null::text as resume_event_id,
        null::text as resume_source_name, 0::numeric as balance_before
    from {{ ledger }};
    {%- else %}
    {#- (per position, through the indexes on sku, location and occurred_at: see macros/ledger.sql) #}
    set local enable_hashjoin = off;
    set local enable_mergejoin = off;
    create temporary table positions_resume as
    with changed as (
        select distinct on (sku, location) sku, location, occurred_at, event_id, source_name
        from {{ ledger }}
        where ledgered_at > '{{ mark }}'::timestamptz
        order by sku, location, occurred_at, event_id collate "C", source_name collate "C"
    )
    select
        changed.sku,
        changed.location,
        anchor.occurred_at as resume_at,
        anchor.event_id as resume_event_id,
        anchor.source_name as resume_source_name,
        case when anchor.movement_type = 'physical_count' then 0
            else coalesce(anchor.balance_after - anchor.quantity_base, 0) end as balance_before
    from changed
    left join lateral (
        select balances.*
        from {{ this }} as balances
        where balances.sku = changed.sku and balances.location = changed.location
            and (balances.occurred_at, balances.event_id collate "C", balances.source_name collate "C")
                < (changed.occurred_at, changed.event_id collate "C", changed.source_name collate "C")
        order by balances.occurred_at desc, balances.event_id collate "C" desc, balances.source_name collate "C" desc
        limit 1
    ) as anchor on true;
    delete from {{ this }} as balances
    using pg_temp.positions_resume as resume
    where balances.sku = resume.sku and balances.location = resume.location
        and (resume.resume_at is null
            or (balances.occurred_at, balances.event_id collate "C", balances.source_name collate "C")
                >= (resume.resume_at, resume.resume_event_id collate "C", resume.resume_source_name collate "C"));
    set local enable_hashjoin = default;
    set local enable_mergejoin = default;
    {%- endif %}
    analyze pg_temp.positions_resume
    {%- endif -%}
{%- endmacro %}
