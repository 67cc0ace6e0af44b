-- The on-hand balance after every ledger movement, per SKU and location: a physical count sets the
-- level, everything else adds to it (DESIGN §6). Independent of the valuation pass on purpose, so
-- checks can compare the two (invariant I-2), and the drift model can read the balance at any time.
-- Order within a position: occurred_at, then event_id and source_name by code point (the valuation's order,
-- DESIGN §7 rule 2, without its transfer exception), so that two sources' events at the same instant with the
-- same id always fold the same way.
-- With var ledger_incremental a build writes again, per position with ledger rows written since its last one, only
-- the balances from the row before the earliest of them on, from that row's balance (macros/positions.sql).
-- depends_on: {{ ref('int_movements_deduplicated') }}
{{ config(**ledger_config(
    pre_hook=["{{ incremental_lock(ref('int_movements_deduplicated')) }}", "{{ positions_catch_up() }}"],
    post_hook=[
        "{{ index_once(['sku', 'location', 'occurred_at']) }}",
        "{{ index_once(['ledgered_at']) }}",
        "{{ index_once(['sku', 'location'], where='is_latest') }}",
    ],
)) }}
with ledger as (
    {%- if is_incremental() %}
    -- the rows of the positions caught up, from where each resumes, with the balance before it
    select ledger.*, resume.balance_before
    from {{ ref('int_movements_unified') }} as ledger
    inner join pg_temp.positions_resume as resume
        on resume.sku = ledger.sku and resume.location = ledger.location
    where resume.resume_at is null
        or (ledger.occurred_at, ledger.event_id collate "C", ledger.source_name collate "C")
            >= (resume.resume_at, resume.resume_event_id collate "C", resume.resume_source_name collate "C")
    {%- else %}
    select ledger.*, 0::numeric as balance_before
    from {{ ref('int_movements_unified') }} as ledger
    {%- endif %}
),

grouped as (
    select
        ledger.*,
        -- Each count opens a new group; within a group the balance is the count plus later deltas.
        count(*) filter (where movement_type = 'physical_count') over by_position as count_group,
        -- the position's latest movement (from the same sort): its balance is the on-hand now
        lead(movement_id) over by_position is null as is_latest
    from ledger
    window by_position as (
        partition by sku, location
        order by occurred_at, event_id collate "C", source_name collate "C"
        rows between unbounded preceding and current row
    )
),

final as (
    select
        movement_id,
        sku,
        location,
        occurred_at,
        event_id,
        source_name,
        movement_type,
        quantity_base,
        sum(quantity_base) over (
            partition by sku, location, count_group
            order by occurred_at, event_id collate "C", source_name collate "C"
            rows between unbounded preceding and current row
        )
        -- before the first count read, the balance the position had before them (0 from its start)
        + case when count_group = 0 then balance_before else 0 end as balance_after,
        is_latest,
        ledgered_at
    from grouped
)

select * from final
