-- The one ordered valuation pass (DESIGN §7): puts every SKU's movements in valuation order, resolves
-- references, and posts them through the valuation engine (macros/valuation), both methods at once.
-- Output is tagged by `entry_kind`: `movement` (one per movement, FIFO and AVCO side by side),
-- `cost_line` (cost-of-goods lineage) and `open_layer`.
--
-- Performance (issue 4): one sort of the ledger, by sku and then, SKU by SKU, in valuation order. The
-- pair of a transfer is found among the transfer_outs alone and brought in by one hash join; the sale /
-- receipt a return references is found by the engine among the SKU's movements (one statement per SKU).
-- No window function from the ledger to the engine: a full build values the SKUs in parts (var
-- valuation_partitions, default 2: the cores of a small machine), by a hash of the sku, each part one
-- serial plan from its own scan of the ledger to the engine, run side by side in parallel workers
-- (Parallel Append; window functions and materialized CTEs are parallel restricted, and would keep it
-- all in one process). The pre_hook's planner settings (valuation_parallel_settings) make that the plan.
-- An incremental build values few SKUs and runs as one part.
--
-- Incremental (var valuation_incremental; dbt-postgres builds increments through a temporary table, which
-- needs the TEMPORARY privilege on the database; without the var the model is a plain table and none of
-- this is computed): a SKU whose ledger rows changed since the last build (new or late events,
-- re-mapped or re-converted rows, a winning duplicate replaced, rows removed) is re-valued from a
-- checkpoint, not from its start. Rules (macros/valuation: the engine and the strategy that writes):
--   * Checkpoints. The engine emits `state` entries: after the last position, and after every
--     `valuation_checkpoint_interval`-th (N) among the last `valuation_checkpoints` × N (K × N). Each
--     holds the fingerprint (count and hash sum of the ledger rows valued up to it, `sku_fingerprint`)
--     and everything the pass carries (`engine_state`): per
--     location quantity, FIFO value, last cost, AVCO value and average, open layers (with their
--     source and receiving movements), negative-stock pieces, in-transit pools by reference, the
--     in-transit totals, the layer counter and the identifiers of the earlier movements those point
--     at. Not a resumable state: after a transfer_in (its order key may be its pair's), and between a
--     return and a later sale / receipt of its group (the return's match depends on that candidate).
--   * Which rows can differ: only those the ledger wrote (ledgered_at) since the ledger the last build read
--     (ledger_read_through). Two paths, chosen per build (valuation_begin_build):
--   * Changes-only path, when the ledger was not filled whole since (the usual incremental build, batches of
--     new rows): those rows are exactly what differs (a ledger built incrementally keeps every other row as
--     it was, and writes again every report of a group it ranks again, the one that stops counting too). Per
--     SKU with such rows, the first of them by its own key, or of the transfer_ins of a reference whose
--     transfer_outs are among them (such a transfer_in is valued at its pair's place), bounds the resume
--     point: the latest resumable checkpoint among the SKU's last K × N positions before it, if (b) and (c)
--     below hold and a row follows it; else the SKU's start. Only the rows after it are read (by index,
--     with the transfer_ins moved after it and the pairs of its transfers): no whole history is hashed.
--   * Fingerprint path, after the ledger was filled whole (reference data changed, a raw row corrected, a
--     full refresh): touched SKU: its fingerprint now differs from its last `state` entry's; untouched SKUs
--     keep their rows (most, when reference data changed). Only SKUs with rows written since are checked.
--   * Resume point (fingerprint path): of the SKU's resumable checkpoints among its last K × N positions (the checkpoints
--     that many builds leave near the end never crowd out the periodic ones: the window is positions,
--     not a count; an event back-dated further re-values the SKU whole), the latest after which at
--     least one ledger row now comes (valuation order, with a moved transfer_in at its pair's place)
--     and for which (a) the rows now at or before it have exactly its
--     fingerprint (so nothing at or before it changed, was removed, or moved out), (b) no row after
--     it is a sale / receipt that a return at or before it references (that return's match could
--     change), (c) every transfer after it whose pair transfer_out lies before it finds its pool in
--     the state. None: the SKU is re-valued from its start (whole history), as before.
--   * A return after the checkpoint whose sale / receipt lies before it gets that movement's position
--     and unit costs from the stored entries (by the same rule as the engine's: own source first).
--   * Writing (strategy valuation_resume): per SKU in the increment, its entries from the resume
--     position on (movement, cost_line, state) and all its open_layer entries are replaced. SKUs that
--     left the ledger are deleted, each leaving a tombstone (post-hook). The checkpoints and each SKU's
--     first position are indexed (post-hook valuation_sku_start_index), so neither needs a scan of the
--     whole table.
--   * Every entry carries `valued_at`, its build's stamp (pre_hook valuation_begin_build, which also locks
--     out a concurrent build): the valuation marts catch up from it (macros/valuation/valuation_catch_up.sql).
-- Both paths are tested equal, value and scale, to a full refresh (tests/valuation).
-- Every build indexes each position's movement entries (sku, location, valuation_sequence; post-hook): what
-- fct_stock_positions reads its last one per position through (one probe each, not a sum over every entry:
-- 24 s -> ~4 s of a cycle at 10M movements), and keeps entry_kind one of its four values by a CHECK constraint.
-- An incremental build runs with enable_nestloop and enable_mergejoin off (transaction-local): the planner
-- has no estimates for the materialized resume CTEs and would pick nested loops over thousands of rows
-- (minutes, not seconds), or sort the touched SKUs' whole history for merge joins (at 1M movements, 3.5 of
-- the 7.5 s it took to find where to resume).
-- Its lookups per SKU (LATERAL, each through an index) end in `offset 0`: the planner would otherwise flatten
-- them into joins, and with nested loops off, hash the whole ledger for each (at 10M movements 1-1.5 s apiece).
-- depends_on: {{ ref('int_valuation_functions_created') }}
-- depends_on: {{ ref('int_movements_deduplicated') }}
{{
    config(
        materialized=('incremental' if var('valuation_incremental', false) else 'table'),
        incremental_strategy='valuation_resume',
        on_schema_change='append_new_columns',
        pre_hook=[
            "{% if var('valuation_incremental', false) %}{{ valuation_begin_build() }}{% endif %}",
            "{{ create_valuation_functions() }}",
            "{% if is_incremental() %}set local enable_nestloop = off; set local enable_mergejoin = off{% else %}{{ valuation_parallel_settings() }}{% endif %}",
        ],
        post_hook=[
            "{{ index_once(['sku', 'location', 'valuation_sequence'], where=\"entry_kind = 'movement'\") }}",
            "{{ check_once(\"entry_kind is not null and entry_kind in ('movement', 'cost_line', 'open_layer', 'state')\", match='%entry_kind IS NOT NULL%') }}",
        ] + (
            ["{{ valuation_sku_start_index() }}", "{% if is_incremental() %}{{ valuation_delete_gone_skus() }}{% endif %}"]
            if var('valuation_incremental', false) else []
        ),
    )
}}

{%- set checkpointing = var('valuation_incremental', false) -%}
{%- set checkpoint_interval = var('valuation_checkpoint_interval', 64) | int -%}
{%- set checkpoints = var('valuation_checkpoints', 4) | int -%}
{#- Parts a full build values in parallel (an incremental build values few SKUs: one part). -#}
{%- set partitions = 1 if is_incremental() else [var('valuation_partitions', 2) | int, 1] | max -%}

{#- What the valuation of a ledger row depends on, hashed; count and sum of these (exact: sum(bigint)
    is numeric) fingerprint a set of rows. -#}
{%- set row_hash -%}
    hashtextextended(concat_ws(
        '|', movement_id, extract(epoch from occurred_at)::text, location, movement_type,
        quantity_base::text, coalesce(unit_cost_base::text, '-'), coalesce(reference, '-')
    ), 0)
{%- endset -%}

{#- Valuation order within a SKU (rule 2): occurred_at, event_id, source_name by code point, except that a
    transfer_in that would come before its pair's transfer_out is valued directly after it (several such
    keep their own event_id order). -#}
{#- Rule 2's exception, for a row of `{rows}` joined to its pair's transfer_out (`pair_outs`): a transfer_in
    that would come before its pair's transfer_out. -#}
{%- set moved_after_pair -%}
coalesce(
            {rows}.movement_type = 'transfer_in'
            and pair_outs.sku is not null
            and ({rows}.occurred_at, {rows}.event_id collate "C", {rows}.source_name collate "C")
            < (pair_outs.pair_occurred_at, pair_outs.pair_event_id, pair_outs.pair_source_name),
            false
        )
{%- endset -%}

{#- The changes-only path (see the header) is taken: set by valuation_begin_build. Pseudo-constant, so PostgreSQL decides
    once per statement which path's CTEs run. -#}
{%- set changes_only -%}
    coalesce(nullif(current_setting({{ valuation_setting('changes_only') }}, true), '')::boolean, false)
{%- endset -%}

{#- What the valuation reads of a ledger row, with its hash, inside a lateral lookup of `ledger`. -#}
{%- set ledger_columns -%}
    ledger.movement_id, ledger.source_name, ledger.event_id, ledger.occurred_at, ledger.location,
            ledger.movement_type, ledger.quantity_base, ledger.unit_cost_base, ledger.reference, {{ row_hash }} as row_hash
{%- endset -%}

{#- The own key of a row or checkpoint `{r}` (valuation order before rule 2's exception), to compare with another's. -#}
{%- set own_key -%}
({r}.occurred_at, {r}.event_id collate "C", {r}.source_name collate "C")
{%- endset -%}

{%- set valuation_order -%}
    order_at, order_event_id collate "C", order_source_name collate "C", is_moved_after_pair,
            moved_event_id collate "C", moved_source_name collate "C"
{%- endset -%}


with ledger as not materialized (
    select * from {{ ref('int_movements_unified') }}
),

{% if is_incremental() %}
-- The last build's checkpoints (`state` entries), newest first per SKU.
stored_checkpoints as materialized (
    select
        sku, valuation_sequence, occurred_at, event_id, source_name, sku_fingerprint, engine_state,
        row_number() over (partition by sku order by valuation_sequence desc) as recency,
        max(valuation_sequence) over (partition by sku) as last_sequence
    from {{ this }}
    where entry_kind = 'state'  -- through the partial index of valuation_sku_start_index
),

-- ===== The fingerprint path (the ledger was filled whole since the last build read it, or no build recorded
-- what it read)
-- The SKUs with ledger rows written since the ledger the last build read (valuation_begin_build; every SKU when
-- the table records none): the only ones whose rows can have changed.
candidates as materialized (
    select distinct sku
    from ledger
    where not {{ changes_only }}
        and ledgered_at > current_setting({{ valuation_setting('ledger_after') }})::timestamptz
),

-- Their ledger rows, with only what the valuation reads, and its hash: read once.
hashed as materialized (
    select
        sku, movement_id, source_name, event_id, occurred_at, location, movement_type, quantity_base,
        unit_cost_base, reference, {{ row_hash }} as row_hash
    from ledger
    where not {{ changes_only }} and sku in (select candidates.sku from candidates)
),

touched as materialized (
    select fingerprints.*
    from (
        select sku, count(*) as row_count, sum(row_hash) as hash_sum
        from hashed
        group by sku
    ) as fingerprints
    left join stored_checkpoints as last_state on last_state.sku = fingerprints.sku and last_state.recency = 1
    where last_state.sku_fingerprint is distinct from fingerprints.row_count::text || ':' || fingerprints.hash_sum::text
),

touched_rows as materialized (
    select hashed.*
    from hashed
    where hashed.sku in (select touched.sku from touched)
),

-- ===== The changes-only path (the ledger built incrementally since the last build read it: every row it wrote
-- since carries a later ledgered_at, and the rows it kept are as that build read them)
-- The rows the ledger wrote since: new ones, and every report of a group ranked again, winner or not (a report
-- that stopped counting is one of them).
changed as materialized (
    select sku, occurred_at, event_id, source_name, movement_type, reference
    from {{ ref('int_movements_deduplicated') }}
    where {{ changes_only }}
        and ledgered_at > current_setting({{ valuation_setting('ledger_after') }})::timestamptz
),

-- Per SKU, the first of them by its own key, or of the transfer_ins of a reference whose transfer_outs changed
-- (where such a transfer_in is valued, its pair's place, may change): nothing before it changed.
earliest as materialized (
    select distinct on (sku) sku, occurred_at, event_id, source_name
    from (
        select sku, occurred_at, event_id, source_name
        from changed
        union all
        select receipts.sku, receipts.occurred_at, receipts.event_id, receipts.source_name
        from (
            select distinct sku, reference
            from changed
            where movement_type = 'transfer_out' and reference is not null
        ) as outs
        cross join lateral (
            select reports.sku, reports.occurred_at, reports.event_id, reports.source_name
            from {{ ref('int_movements_deduplicated') }} as reports
            where reports.sku = outs.sku and reports.reference = outs.reference and reports.movement_type = 'transfer_in'
            offset 0
        ) as receipts
    ) as changes
    order by sku, occurred_at, event_id collate "C", source_name collate "C"
),

-- Where each such SKU may resume: after its latest resumable checkpoint among its last K × N positions that comes
-- before the first change (none: from its start).
fast_start as materialized (
    select distinct on (earliest.sku)
        earliest.sku,
        checkpoint.valuation_sequence,
        checkpoint.occurred_at,
        checkpoint.event_id,
        checkpoint.source_name,
        checkpoint.engine_state
    from earliest
    left join stored_checkpoints as checkpoint
        on checkpoint.sku = earliest.sku
        and checkpoint.engine_state is not null
        and checkpoint.valuation_sequence >= checkpoint.last_sequence - {{ checkpoints * checkpoint_interval }}
        and {{ own_key | replace('{r}', 'checkpoint') }} < {{ own_key | replace('{r}', 'earliest') }}
    order by earliest.sku, checkpoint.valuation_sequence desc nulls last
),

-- The rows after that checkpoint by their own key, each SKU's looked up by index (sku, occurred_at).
fast_tail as materialized (
    select fast_start.sku, rows.*
    from fast_start
    cross join lateral (
        select {{ ledger_columns }}
        from ledger
        where ledger.sku = fast_start.sku
            and ledger.occurred_at >= fast_start.occurred_at
            and {{ own_key | replace('{r}', 'ledger') }} > {{ own_key | replace('{r}', 'fast_start') }}
        offset 0
    ) as rows
    where fast_start.valuation_sequence is not null
),

-- The pair of every transfer among them, and of the checkpoint's own movement when it is a transfer_out (a
-- transfer_in stamped before it is valued right after it): the SKU's first transfer_out of the reference,
-- wherever it lies.
fast_tail_pairs as materialized (
    select
        refs.sku,
        refs.reference,
        pair.occurred_at as pair_occurred_at,
        pair.event_id as pair_event_id,
        pair.source_name as pair_source_name
    from (
        select sku, reference
        from fast_tail
        where movement_type in ('transfer_out', 'transfer_in') and reference is not null
        union
        select fast_start.sku, at_checkpoint.reference
        from fast_start
        cross join lateral (
            select ledger.reference
            from ledger
            where ledger.sku = fast_start.sku
                and ledger.occurred_at = fast_start.occurred_at
                and ledger.event_id = fast_start.event_id
                and ledger.source_name = fast_start.source_name
                and ledger.movement_type = 'transfer_out'
                and ledger.reference is not null
            offset 0
        ) as at_checkpoint
        where fast_start.valuation_sequence is not null
    ) as refs
    cross join lateral (
        select ledger.occurred_at, ledger.event_id, ledger.source_name
        from ledger
        where ledger.sku = refs.sku and ledger.reference = refs.reference and ledger.movement_type = 'transfer_out'
        order by ledger.occurred_at, ledger.event_id collate "C", ledger.source_name collate "C"
        limit 1
    ) as pair
),

-- The transfer_ins at or before the checkpoint by their own key that are valued after it: moved to their pair's
-- place, which lies after it, or is the checkpoint's own movement (they follow it).
fast_moved_ins as materialized (
    select fast_start.sku, rows.*
    from fast_tail_pairs as pairs
    inner join fast_start on fast_start.sku = pairs.sku
    cross join lateral (
        select {{ ledger_columns }}
        from ledger
        where ledger.sku = pairs.sku and ledger.reference = pairs.reference and ledger.movement_type = 'transfer_in'
            and {{ own_key | replace('{r}', 'ledger') }} <= {{ own_key | replace('{r}', 'fast_start') }}
        offset 0
    ) as rows
    where (pairs.pair_occurred_at, pairs.pair_event_id collate "C", pairs.pair_source_name collate "C")
        >= {{ own_key | replace('{r}', 'fast_start') }}
),

-- SKUs that cannot resume from that checkpoint: (c) a transfer after it (by its own key, or moved after it)
-- whose pair lies at or before it and whose pool is not in its state; (b) a changed sale / receipt (after it) that a
-- return at or before it references.
fast_blocked as (
    select after.sku
    from (
        select sku, movement_type, reference from fast_tail
        union all
        select sku, movement_type, reference from fast_moved_ins
    ) as after
    inner join fast_start on fast_start.sku = after.sku
    inner join fast_tail_pairs as pairs on pairs.sku = after.sku and pairs.reference = after.reference
    where after.movement_type in ('transfer_out', 'transfer_in')
        and (pairs.pair_occurred_at, pairs.pair_event_id collate "C", pairs.pair_source_name collate "C")
            <= {{ own_key | replace('{r}', 'fast_start') }}
        and not coalesce(fast_start.engine_state->'pool_refs' ? after.reference, false)
    union
    select changed.sku
    from changed
    inner join fast_start on fast_start.sku = changed.sku
    cross join lateral (
        select 1
        from ledger as returns
        where returns.sku = changed.sku
            and returns.reference = changed.event_id
            and returns.movement_type
                = case when changed.movement_type = 'sale' then 'customer_return' else 'vendor_return' end
            and {{ own_key | replace('{r}', 'returns') }} <= {{ own_key | replace('{r}', 'fast_start') }}
        limit 1
    ) as referencing
    where changed.movement_type in ('sale', 'receipt') and fast_start.valuation_sequence is not null
),

-- Where each resumes: after the checkpoint when a row follows it and it is not blocked, else from the start.
fast_resume as materialized (
    select
        fast_start.sku,
        case when resumes then fast_start.valuation_sequence else 0 end as resume_after,
        case when resumes then fast_start.occurred_at end as occurred_at,
        case when resumes then fast_start.event_id end as event_id,
        case when resumes then fast_start.source_name end as source_name,
        case when resumes then fast_start.engine_state end as engine_state
    from (
        select
            fast_start.*,
            fast_start.valuation_sequence is not null and followed.sku is not null and blocked.sku is null as resumes
        from fast_start
        left join (select distinct sku from fast_tail) as followed on followed.sku = fast_start.sku
        left join (select distinct sku from fast_blocked) as blocked on blocked.sku = fast_start.sku
    ) as fast_start
),

-- The whole history of the SKUs re-valued from their start.
fast_whole_rows as materialized (
    select fast_resume.sku, rows.*
    from fast_resume
    cross join lateral (
        select {{ ledger_columns }}
        from ledger
        where ledger.sku = fast_resume.sku
        offset 0
    ) as rows
    where fast_resume.resume_after = 0
),

-- What this path values: the rows after the checkpoint (with the moved transfer_ins), or the whole history.
fast_movements as not materialized (
    select rows.*, fast_resume.resume_after
    from (
        select * from fast_tail
        union all
        select * from fast_moved_ins
    ) as rows
    inner join fast_resume on fast_resume.sku = rows.sku
    where fast_resume.resume_after > 0
    union all
    select fast_whole_rows.*, 0 as resume_after
    from fast_whole_rows
),

-- ===== Both paths
-- Transfers are paired over the whole history of the SKUs re-valued whole or fingerprinted (a pair may straddle the
-- checkpoint); the changes-only path looked up the pairs of the rest (fast_tail_pairs).
pairing_rows as not materialized (
    select * from touched_rows
    union all
    select * from fast_whole_rows
),
{% else %}
pairing_rows as not materialized (
    select ledger.*, {{ row_hash if checkpointing else 'null::bigint' }} as row_hash from ledger
),
{% endif %}

-- Transfers carrying a reference, with their pair: the SKU's first transfer_out with that reference
-- (transfer_outs are never moved, so this is their valuation order). No window functions from here to
-- the engine: they are parallel restricted, and the full build values SKUs in parallel workers (`posted`).
pair_outs as (
    select distinct on (sku, reference)
        sku,
        reference,
        occurred_at as pair_occurred_at,
        event_id as pair_event_id,
        source_name as pair_source_name
    from pairing_rows
    where movement_type = 'transfer_out' and reference is not null
    order by sku, reference, occurred_at, event_id collate "C", source_name collate "C"
),

{% if is_incremental() %}
-- Transfers with their pair (near_end); transfer_reference: set when the pair has a transfer_out.
transfers as materialized (
    select
        pairing_rows.sku, pairing_rows.movement_id, pairing_rows.source_name, pairing_rows.event_id,
        pairing_rows.occurred_at, pairing_rows.location, pairing_rows.movement_type, pairing_rows.quantity_base,
        pairing_rows.unit_cost_base, pairing_rows.reference, pairing_rows.row_hash,
        pair_outs.pair_occurred_at,
        pair_outs.pair_event_id,
        pair_outs.pair_source_name,
        case when pair_outs.sku is not null then pairing_rows.reference end as transfer_reference,
        {{ moved_after_pair | replace('{rows}', 'pairing_rows') }} as is_moved_after_pair
    from touched_rows as pairing_rows
    left join pair_outs on pair_outs.sku = pairing_rows.sku and pair_outs.reference = pairing_rows.reference
    where pairing_rows.movement_type in ('transfer_out', 'transfer_in') and pairing_rows.reference is not null
),

-- The checkpoints a touched SKU may resume from: the resumable ones among its last K × N positions.
considered as materialized (
    select stored_checkpoints.*
    from stored_checkpoints
    inner join touched on touched.sku = stored_checkpoints.sku
    where stored_checkpoints.engine_state is not null
        and stored_checkpoints.valuation_sequence >= stored_checkpoints.last_sequence - {{ checkpoints * checkpoint_interval }}
),

-- The touched rows that may come after one of them, with their valuation-order key: the rows after the
-- oldest considered checkpoint by their own key, and every transfer_in that is moved (its key is its
-- pair's, later than its own).
near_end as materialized (
    select
        touched_rows.*,
        transfers.transfer_reference,
        transfers.pair_occurred_at,
        transfers.pair_event_id,
        transfers.pair_source_name,
        coalesce(transfers.is_moved_after_pair, false) as is_moved_after_pair,
        case when transfers.is_moved_after_pair then transfers.pair_occurred_at else touched_rows.occurred_at end
            as order_at,
        case when transfers.is_moved_after_pair then transfers.pair_event_id else touched_rows.event_id end
            as order_event_id,
        case when transfers.is_moved_after_pair then transfers.pair_source_name else touched_rows.source_name end
            as order_source_name
    from touched_rows
    inner join (
        select distinct on (sku) sku, occurred_at, event_id, source_name
        from considered
        order by sku, valuation_sequence
    ) as floor_checkpoint on floor_checkpoint.sku = touched_rows.sku
    left join transfers on transfers.sku = touched_rows.sku and transfers.movement_id = touched_rows.movement_id
    where (touched_rows.occurred_at, touched_rows.event_id collate "C", touched_rows.source_name collate "C")
            > (floor_checkpoint.occurred_at, floor_checkpoint.event_id collate "C", floor_checkpoint.source_name collate "C")
        or transfers.is_moved_after_pair
),

-- Per considered checkpoint: the rows now after it (count, hash sum) and whether one of them is a
-- transfer whose pool lies before the checkpoint but is not in its state (rule (c)).
after_checkpoint as materialized (
    select
        considered.sku,
        considered.valuation_sequence,
        count(*) as after_count,
        sum(near_end.row_hash) as after_sum,
        bool_or(
            near_end.transfer_reference is not null
            and (near_end.pair_occurred_at, near_end.pair_event_id collate "C", near_end.pair_source_name collate "C")
                <= (considered.occurred_at, considered.event_id collate "C", considered.source_name collate "C")
            and not coalesce(considered.engine_state->'pool_refs' ? near_end.reference, false)
        ) as pool_missing
    from considered
    inner join near_end on near_end.sku = considered.sku and {{ valuation_after_checkpoint('near_end', 'considered') }}
    group by considered.sku, considered.valuation_sequence
),

-- Rule (b): a sale / receipt after the checkpoint that a return at or before it references.
candidate_after_return as materialized (
    select distinct considered.sku, considered.valuation_sequence
    from (
        select
            sku, event_id, order_at, order_event_id, order_source_name, is_moved_after_pair,
            case when movement_type = 'sale' then 'customer_return' else 'vendor_return' end as return_type
        from near_end
        where movement_type in ('sale', 'receipt')
    ) as candidates
    inner join considered
        on considered.sku = candidates.sku
        and {{ valuation_after_checkpoint('candidates', 'considered') }}
    inner join (
        select sku, reference, movement_type, occurred_at, event_id, source_name
        from touched_rows
        where movement_type in ('customer_return', 'vendor_return') and reference is not null
    ) as returns
        on returns.sku = candidates.sku
        and returns.reference = candidates.event_id
        and returns.movement_type = candidates.return_type
        and (returns.occurred_at, returns.event_id collate "C", returns.source_name collate "C")
            <= (considered.occurred_at, considered.event_id collate "C", considered.source_name collate "C")
),

-- Where each touched SKU resumes: after the latest checkpoint that passes (a) to (c), else from the start.
resumable as (
    select distinct on (considered.sku)
        considered.sku,
        considered.valuation_sequence,
        considered.occurred_at,
        considered.event_id,
        considered.source_name,
        considered.engine_state
    from considered
    inner join touched on touched.sku = considered.sku
    inner join after_checkpoint
        on after_checkpoint.sku = considered.sku
        and after_checkpoint.valuation_sequence = considered.valuation_sequence
    left join candidate_after_return
        on candidate_after_return.sku = considered.sku
        and candidate_after_return.valuation_sequence = considered.valuation_sequence
    where not after_checkpoint.pool_missing
        and candidate_after_return.sku is null
        and considered.sku_fingerprint
            = (touched.row_count - after_checkpoint.after_count)::text
            || ':' || (touched.hash_sum - after_checkpoint.after_sum)::text
    order by considered.sku, considered.valuation_sequence desc
),

resume as materialized (
    select
        touched.sku,
        coalesce(resumable.valuation_sequence, 0) as resume_after,
        resumable.occurred_at,
        resumable.event_id,
        resumable.source_name,
        resumable.engine_state
    from touched
    left join resumable on resumable.sku = touched.sku
    union all
    select sku, resume_after, occurred_at, event_id, source_name, engine_state
    from fast_resume
),

-- What is valued: the rows after the resume point (all rows of a SKU re-valued from its start).
{%- set movement_columns -%}
    touched_rows.sku, touched_rows.movement_id, touched_rows.source_name, touched_rows.event_id,
        touched_rows.occurred_at, touched_rows.location, touched_rows.movement_type, touched_rows.quantity_base,
        touched_rows.unit_cost_base, touched_rows.reference, touched_rows.row_hash, resume.resume_after
{%- endset %}
movements as not materialized (
    select {{ movement_columns }}
    from touched_rows
    inner join resume on resume.sku = touched_rows.sku
    where resume.resume_after = 0
    union all
    select {{ movement_columns }}
    from near_end as touched_rows
    inner join resume on resume.sku = touched_rows.sku
    where resume.resume_after > 0 and {{ valuation_after_checkpoint('touched_rows', 'resume') }}
    union all
    select * from fast_movements
),

-- The pairs of the transfers valued: the changes-only path's resumed SKUs' as looked up, the rest's found above.
known_pairs as not materialized (
    select * from pair_outs
    union all
    select fast_tail_pairs.*
    from fast_tail_pairs
    inner join fast_resume on fast_resume.sku = fast_tail_pairs.sku
    where fast_resume.resume_after > 0
),

-- A return after the resume point whose sale / receipt (by event_id) was valued before it: that one's
-- position and unit costs, own source first, from the stored movement entries (looked up per return by index
-- (sku, event_id) of the movement entries: a join read all of them, 3 s at 10M movements).
prefix_candidates as (
    select returns.movement_id, valued.*
    from movements as returns
    cross join lateral (
        select
            candidates.source_name = returns.source_name as same_source,
            candidates.valuation_sequence,
            candidates.fifo_unit_cost_applied,
            candidates.avco_unit_cost_applied
        from {{ this }} as candidates
        where candidates.sku = returns.sku
            and candidates.entry_kind = 'movement'
            and candidates.event_id = returns.reference
            and candidates.movement_type
                = case when returns.movement_type = 'customer_return' then 'sale' else 'receipt' end
            and candidates.valuation_sequence <= returns.resume_after
        order by candidates.source_name = returns.source_name desc, candidates.valuation_sequence
        limit 1
    ) as valued
    where returns.movement_type in ('customer_return', 'vendor_return') and returns.reference is not null
),
{% else %}
movements as not materialized (
    select pairing_rows.*, 0 as resume_after
    from pairing_rows
),
{% endif %}

-- Every movement once, with what the engine needs beyond its ledger row: a transfer its pair (from
-- pair_outs: the engine values a transfer_in whose pair has a transfer_out from that pair's in-transit
-- pool, and after it); a return its reference, which the engine resolves itself among the movements it is
-- given (when resuming: a candidate before the resume point is brought by prefix_candidates). Rows keep
-- their own (occurred_at, event_id, source_name) as order key, except a moved transfer_in. One scan and a
-- hash join, no window and no union: each part of a full build is one serial plan, so that the parts can
-- run in parallel (see `posted`). Unit tests and a freshly built ledger have no statistics: the pre_hook
-- rules out nested loops.
joined as (
    select
        movements.sku, movements.movement_id, movements.source_name, movements.event_id, movements.occurred_at,
        movements.location, movements.movement_type, movements.quantity_base, movements.unit_cost_base,
        movements.reference, movements.row_hash, movements.resume_after,
        case
            when pair_outs.sku is not null or movements.movement_type in ('customer_return', 'vendor_return')
                then movements.reference
        end as reference_key,
        {{ moved_after_pair | replace('{rows}', 'movements') }} as is_moved_after_pair,
        pair_outs.pair_occurred_at,
        pair_outs.pair_event_id,
        pair_outs.pair_source_name
        {%- if is_incremental() %},
        prefix_candidates.same_source as ref_same_source,
        prefix_candidates.valuation_sequence as ref_position,
        prefix_candidates.fifo_unit_cost_applied as ref_fifo,
        prefix_candidates.avco_unit_cost_applied as ref_avco
        {%- endif %}
    from movements
    left join {{ 'known_pairs' if is_incremental() else 'pair_outs' }} as pair_outs
        on movements.movement_type in ('transfer_out', 'transfer_in')
        and pair_outs.sku = movements.sku
        and pair_outs.reference = movements.reference
    {%- if is_incremental() %}
    left join prefix_candidates on prefix_candidates.movement_id = movements.movement_id
    {%- endif %}
),

keyed as (
    select
        sku, movement_id, source_name, event_id, occurred_at, location, movement_type, quantity_base,
        unit_cost_base, reference, row_hash, resume_after, reference_key,
        {%- if is_incremental() %}
        ref_position, ref_fifo, ref_avco, ref_same_source,
        {%- endif %}
        is_moved_after_pair,
        case when is_moved_after_pair then pair_occurred_at else occurred_at end as order_at,
        case when is_moved_after_pair then pair_event_id else event_id end as order_event_id,
        case when is_moved_after_pair then pair_source_name else source_name end as order_source_name,
        case when is_moved_after_pair then event_id else '' end as moved_event_id,
        case when is_moved_after_pair then source_name else '' end as moved_source_name
    from joined
),

-- Every array in valuation order (index = valuation_sequence; when resuming, positions up to the resume
-- point are null: valued already).
skus as {% if partitions > 1 %}not materialized {% endif %}(
    select
        sku,
        resume_after,
        {{ valuation_positions_agg('movement_id', 'text', valuation_order) }} as movement_ids,
        {{ valuation_positions_agg('source_name', 'text', valuation_order) }} as source_names,
        {{ valuation_positions_agg('event_id', 'text', valuation_order) }} as event_ids,
        {{ valuation_positions_agg('occurred_at', 'timestamptz', valuation_order) }} as occurred_ats,
        {{ valuation_positions_agg('location', 'text', valuation_order) }} as locations,
        {{ valuation_positions_agg('movement_type', 'text', valuation_order) }} as movement_types,
        {{ valuation_positions_agg('quantity_base', 'numeric', valuation_order) }} as quantities,
        {{ valuation_positions_agg('unit_cost_base', 'numeric', valuation_order) }} as unit_costs,
        {{ valuation_positions_agg('reference_key', 'text', valuation_order) }} as reference_keys,
        {%- if checkpointing %}
        {{ valuation_positions_agg('row_hash', 'bigint', valuation_order) }} as row_hashes,
        {%- else %}
        null::bigint[] as row_hashes,
        {%- endif %}
        {%- if is_incremental() %}
        {{ valuation_positions_agg('ref_position', 'integer', valuation_order) }} as ref_positions,
        {{ valuation_positions_agg('ref_fifo', 'numeric', valuation_order) }} as ref_fifos,
        {{ valuation_positions_agg('ref_avco', 'numeric', valuation_order) }} as ref_avcos,
        {{ valuation_positions_agg('ref_same_source', 'boolean', valuation_order) }} as ref_same_sources
        {%- else %}
        null::integer[] as ref_positions,
        null::numeric[] as ref_fifos,
        null::numeric[] as ref_avcos,
        null::boolean[] as ref_same_sources
        {%- endif %}
    -- sorted by sku first, so that each SKU's movements are then put in order on their own (an incremental
    -- sort of ~1,000 rows at a time rather than one sort of the whole ledger)
    from (select * from keyed order by sku) as keyed
    group by sku, resume_after
),

-- A full build values the SKUs in `partitions` parts by a hash of the sku, one part per branch of a UNION
-- ALL that PostgreSQL runs as a Parallel Append: each part (its own scan of the ledger, filtered by the
-- hash, down to the engine) in one worker. Nothing below is parallel restricted (no window function, no
-- materialized CTE); the pre_hook makes the planner consider it (the engine is expensive per SKU).
posted as (
    {%- for part in range(partitions) %}
    {% if not loop.first %}union all{% endif %}
    select
        skus.sku,
        entries.*
    from skus
    {%- if is_incremental() %}
    inner join resume on resume.sku = skus.sku
    {%- endif %}
    cross join lateral {{ valuation_post_sku_call([
        'skus.movement_ids', 'skus.source_names', 'skus.event_ids', 'skus.occurred_ats', 'skus.locations',
        'skus.movement_types', 'skus.quantities', 'skus.unit_costs', 'skus.reference_keys', 'skus.row_hashes',
        'skus.ref_positions', 'skus.ref_fifos', 'skus.ref_avcos', 'skus.ref_same_sources', 'skus.resume_after + 1',
        ('resume.engine_state' if is_incremental() else 'null::jsonb'),
        (checkpoint_interval ~ '' if checkpointing else 'null::integer'),
        (checkpoints ~ '' if checkpointing else 'null::integer')]) }} as entries
    {%- if partitions > 1 %}
    where abs(hashtext(skus.sku)::bigint) % {{ partitions }} = {{ part }}
    {%- endif %}
    {%- endfor %}
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
        state_fingerprint as sku_fingerprint,
        engine_state,
        {{ valuation_ledger_through() }} as ledger_read_through,
        -- this build's stamp: what the valuation marts catch up from (macros/valuation/valuation_catch_up.sql)
        {{ valuation_build_stamp() }} as valued_at
    from posted
)

select * from final
