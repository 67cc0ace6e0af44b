{#-
    The valuation engine: FIFO and AVCO (DESIGN §7), both methods in one ordered pass per SKU.

    This is the only place valuation is computed. `create_valuation_functions()` (a pre_hook of the
    valuation models) installs `valuation_post_sku(...)`; `valuation_post_sku_call(...)` is how a
    model calls it. Both go through `adapter.dispatch` so another warehouse can bring its own engine.

    The function takes one SKU's movements as parallel arrays already in valuation order (index =
    valuation_sequence; transfers paired by the calling model, returns' references resolved here, see
    the arguments) and returns a
    tagged set of entries: one `movement` entry per movement (both methods side by side), one
    `cost_line` entry per cost-of-goods line, and one `open_layer` entry per FIFO layer still open at
    the end. Taking arrays rather than reading a table keeps the model's own CTEs as its input, so dbt
    unit tests can mock it, and keeps all state in memory: no temp tables, no per-row DML.

    The rules, and every point DESIGN §7 leaves open, are stated in tests/reference/valuation.py, the
    independent reference this function is tested against row for row.

    Performance (issue 4): PL/pgSQL spends its time per statement executed, not per operation, so the
    pass is written for few statements per movement. Each entry is emitted by ONE `return next row(...)`
    (the function returns `setof record`; the call macro supplies the column definition list) instead
    of assigning ~40 OUT variables; the common cases (an issue the oldest layer covers, an inbound
    with no negative stock to settle) have short paths; FIFO queues are linked lists over node arrays
    (head/tail indexes, never shifted or copied); every array is only read or assigned element-wise,
    which PL/pgSQL does in place. The arithmetic is, expression for expression, the same as before those
    changes, so the values AND their numeric scales (compared as text by the dbt unit tests) are
    unchanged, whichever path computes them. The function is parallel safe (it reads no table and
    writes nothing), so a full build runs it in parallel workers, one part of the SKUs each (see the
    model and valuation_parallel_settings below).

    Resuming (issue 4's incremental goal; rules in int_valuation_entries_posted's header): given row
    hashes, the pass also emits `state` entries (checkpoints): the fingerprint of the positions valued so
    far and, as jsonb, everything it carries after them (_capture_checkpoint). Given one of those
    (p_state) and the position after it (p_first), it restores that state and values only the positions
    from p_first on, with valuation_sequence, layer_sequence and the lineage positions continuing as a
    pass from the start would have them: the same statements on the same values in the same order,
    so the same entries, scales included. The incremental strategy `valuation_resume` below replaces
    exactly the entries such a pass re-emits. Also here: the order-key comparison and the
    position-aligned array aggregate the model uses to resume.
-#}

{% macro valuation_schema() -%}
    {{ generate_schema_name('intermediate', none) | trim }}
{%- endmacro %}


{% macro create_valuation_functions() -%}
    {{ return(adapter.dispatch('create_valuation_functions')()) }}
{%- endmacro %}


{% macro default__create_valuation_functions() -%}
    {{ exceptions.raise_compiler_error(
        "The valuation engine has no implementation for adapter '" ~ adapter.type() ~ "'; "
        ~ "add <adapter>__create_valuation_functions and <adapter>__valuation_post_sku_call."
    ) }}
{%- endmacro %}


{#- Resuming (int_valuation_entries_posted): row `r` (with its order key columns order_at,
    order_event_id, order_source_name, is_moved_after_pair) comes after checkpoint `c` in valuation order.
    A checkpoint is never a transfer_in, so its key is its own (occurred_at, event_id, source_name). -#}
{% macro valuation_after_checkpoint(r, c) -%}
    (({{ r }}.order_at, {{ r }}.order_event_id collate "C", {{ r }}.order_source_name collate "C")
        > ({{ c }}.occurred_at, {{ c }}.event_id collate "C", {{ c }}.source_name collate "C")
     or ({{ r }}.order_at, {{ r }}.order_event_id collate "C", {{ r }}.order_source_name collate "C")
        = ({{ c }}.occurred_at, {{ c }}.event_id collate "C", {{ c }}.source_name collate "C")
        and {{ r }}.is_moved_after_pair)
{%- endmacro %}


{#- One engine input array, in valuation order; when resuming, led by `resume_after` nulls, so that the
    index is the valuation_sequence. -#}
{% macro valuation_positions_agg(column, type, order) -%}
    {%- if is_incremental() %}array_fill(null::{{ type }}, array[resume_after]) || {% endif -%}
    array_agg({{ column }} order by {{ order }})
{%- endmacro %}


{#- Incremental strategy `valuation_resume` of int_valuation_entries_posted: the increment holds, per SKU
    it re-valued, the entries from its resume position on (its first movement entry's valuation_sequence)
    and all its open layers. Replace exactly those: the SKU's movement, cost_line and state entries from
    that position on and its open_layer entries; the rest of the SKU (its unchanged prefix and the
    checkpoints in it) stays. Every SKU in an increment has at least one movement entry (the model
    resumes only where a row follows the checkpoint). -#}
{% macro get_incremental_valuation_resume_sql(arg_dict) -%}
    {{ return(adapter.dispatch('valuation_resume_sql')(arg_dict)) }}
{%- endmacro %}


{% macro default__valuation_resume_sql(arg_dict) -%}
    {{ exceptions.raise_compiler_error("No valuation_resume incremental strategy for adapter '" ~ adapter.type() ~ "'.") }}
{%- endmacro %}


{% macro postgres__valuation_resume_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }} as t
    using (
        select sku, min(valuation_sequence) as resume_from
        from {{ source }}
        where entry_kind = 'movement'
        group by sku
    ) as r
    -- (a tombstone, a state entry at position 0, goes too: the SKU is back in the ledger)
    where t.sku = r.sku and (t.entry_kind = 'open_layer' or t.valuation_sequence >= r.resume_from
        or t.entry_kind = 'state' and t.valuation_sequence = 0);

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ source }};
{%- endmacro %}


{#- post_hook of int_valuation_entries_posted with checkpoints: the indexes an incremental build and the marts
    catching up look things up through among millions of entries:
      * a partial index on the `state` entries (checkpoints, tombstones) and each SKU's first position (every
        SKU valued has one, checkpoints or not). Without it, finding the checkpoints and the SKUs that left
        the ledger each read the whole table: at 10M movements (8 GB of entries) 10 s cold and 14 s. dbt's
        `indexes` config cannot declare a partial index;
      * one on valued_at, what the marts catch up from (macros/valuation/valuation_catch_up.sql): a full
        build stamps every entry alike, so it is a few pages (B-tree deduplication) until builds add stamps.
      * one on the movement entries' (sku, event_id): where a return re-valued finds the sale / receipt it
        references when that was valued before the resume point (prefix_candidates; a join read every entry).
    Each is created once per table (a full build makes a new table, and the one it replaces keeps its own
    indexes until dropped, so the test is on this relation's indexes). -#}
{% macro valuation_sku_start_index() -%}
    {{ return(adapter.dispatch('valuation_sku_start_index')()) }}
{%- endmacro %}


{% macro default__valuation_sku_start_index() -%}
{%- endmacro %}


{% macro postgres__valuation_sku_start_index() -%}
{{ index_once(['sku', 'valuation_sequence'], "entry_kind = 'state' or valuation_sequence = 1") }};
{{ index_once(['sku', 'event_id'], "entry_kind = 'movement'") }};
{{ index_once(['valued_at']) }}
{%- endmacro %}


{#- post_hook of an incremental build of int_valuation_entries_posted: the entries of SKUs no longer in the
    ledger go, and each leaves a tombstone (a `state` entry at position 0, without state, stamped with this
    build) from which the valuation marts learn it (valuation_catch_up.sql). On the changes-only path only a SKU
    with ledger rows written since the last build can have left (a row leaves the ledger only when the ledger
    writes its group again), so only those are looked up, each by index (2.2 s -> 1.2 s of a cycle at 10M movements).
    Otherwise such SKUs are found among the entries at a SKU's first position and the checkpoints
    (valuation_sku_start_index), not by probing the ledger for every entry; when there are none, nothing else
    is read. -#}
{% macro valuation_delete_gone_skus() -%}
    {%- set ledger = ref('int_movements_unified') -%}
    {%- set changed_skus -%}
                    select changed.sku
                    from (
                        select distinct sku
                        from {{ ref('int_movements_deduplicated') }}
                        where ledgered_at > current_setting({{ valuation_setting('ledger_after') }})::timestamptz
                    ) as changed
                    cross join lateral (
                        select 1 from {{ this }} as starts
                        where starts.sku = changed.sku and (starts.entry_kind = 'state' or starts.valuation_sequence = 1)
                            and starts.valuation_sequence > 0
                        limit 1
                    ) as valued
                    where not exists (select 1 from {{ ledger }} as ledger where ledger.sku = changed.sku)
    {%- endset -%}
    {%- set valued_skus -%}
                    select starts.sku
                    from {{ this }} as starts
                    where (starts.entry_kind = 'state' or starts.valuation_sequence = 1) and starts.valuation_sequence > 0
                        and not exists (select 1 from {{ ledger }} as ledger where ledger.sku = starts.sku)
                    group by starts.sku
    {%- endset -%}
    do $gone$
    begin
        if coalesce(nullif(current_setting({{ valuation_setting('changes_only') }}, true), '')::boolean, false) then
            {{ valuation_tombstone_skus(changed_skus) }};
        else
            {{ valuation_tombstone_skus(valued_skus) }};
        end if;
    end
    $gone$
{%- endmacro %}


{#- The entries of the SKUs `gone_skus` (a query of their `sku`) go, each leaving a tombstone. -#}
{% macro valuation_tombstone_skus(gone_skus) -%}
            with gone as (
                delete from {{ this }} as t
                using ({{ gone_skus }}
                ) as gone_skus
                where t.sku = gone_skus.sku
                returning t.sku
            )
            insert into {{ this }} (entry_kind, sku, valuation_sequence, valued_at)
            select distinct 'state', sku, 0, {{ valuation_build_stamp() }}
            from gone
{%- endmacro %}


{#- `arrays`: the SQL expressions of the input arrays, in the order of valuation_post_sku's arguments.
    Returns a FROM item (to be given an alias) whose columns are the entry columns below. -#}
{% macro valuation_post_sku_call(arrays) -%}
    {{ return(adapter.dispatch('valuation_post_sku_call')(arrays)) }}
{%- endmacro %}


{% macro default__valuation_post_sku_call(arrays) -%}
    {{ exceptions.raise_compiler_error("No valuation engine for adapter '" ~ adapter.type() ~ "'.") }}
{%- endmacro %}


{% macro postgres__valuation_post_sku_call(arrays) -%}
    (select * from {{ valuation_schema() }}.valuation_post_sku({{ arrays | join(', ') }}) as posted_entries (
        entry_kind text,
        valuation_sequence integer,
        line_sequence integer,
        movement_id text,
        source_name text,
        event_id text,
        occurred_at timestamptz,
        movement_type text,
        location text,
        quantity_base numeric,
        counted_quantity_base numeric,
        balance_quantity numeric,
        in_transit_quantity numeric,
        fifo_unit_cost_applied numeric,
        fifo_stock_value_change numeric,
        fifo_revaluation_amount numeric,
        fifo_balance_value numeric,
        fifo_in_transit_value numeric,
        avco_unit_cost_applied numeric,
        avco_stock_value_change numeric,
        avco_revaluation_amount numeric,
        avco_balance_value numeric,
        avco_average_unit_cost numeric,
        avco_in_transit_value numeric,
        method text,
        cost_kind text,
        issue_movement_id text,
        issue_event_id text,
        issue_location text,
        issued_at timestamptz,
        issue_movement_type text,
        source_movement_id text,
        source_event_id text,
        source_movement_type text,
        line_quantity_base numeric,
        line_unit_cost_base numeric,
        line_cost_amount numeric,
        provisional_unit_cost_base numeric,
        layer_sequence integer,
        state_fingerprint text,
        engine_state jsonb
    ))
{%- endmacro %}


{#- One entry, in the column order of the definition list above (`return next` checks the types by
    position: every argument must be of exactly the listed type). Cost lines and movements carry the
    identifying columns of the movement being valued (`i`); the arguments not given are null. -#}
{% macro _movement_entry(quantity, f_unit, f_change, f_reval, a_unit, a_change, a_reval) -%}
row('movement'::text, i, null::integer, v_movement_id, v_source_name, v_event_id, v_occurred_at, v_type, v_location,
                {{ quantity }}, case when v_type = 'physical_count' then p_quantity[i] end, loc_qty[li], tr_qty,
                {{ f_unit }}, {{ f_change }}, {{ f_reval }}, fifo_val[li], tr_fifo,
                {{ a_unit }}, {{ a_change }}, {{ a_reval }}, avco_val[li], avco_avg[li], tr_avco,
                null::text, null::text, null::text, null::text, null::text, null::timestamptz, null::text,
                null::text, null::text, null::text, null::numeric, null::numeric, null::numeric, null::numeric,
                null::integer, null::text, null::jsonb)
{%- endmacro %}

{#- `issue` and `source` are movement positions (`source` may be null); `issue` "i" is the movement being
    valued, whose identifying values are at hand. -#}
{% macro _cost_line_entry(line, method, kind, issue, source, quantity, unit_cost, amount, provisional='null::numeric') -%}
row('cost_line'::text, i, {{ line }}, v_movement_id, v_source_name, v_event_id, v_occurred_at, v_type, v_location,
                null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric,
                null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric,
                null::numeric, {{ method }}::text, {{ kind }}::text,
                {% if issue == "i" -%}
                v_movement_id, v_event_id, v_location, v_occurred_at, v_type,
                {%- else -%}
                p_movement_id[{{ issue }}], p_event_id[{{ issue }}], p_location[{{ issue }}], p_occurred_at[{{ issue }}],
                p_movement_type[{{ issue }}],
                {%- endif %}
                p_movement_id[{{ source }}], p_event_id[{{ source }}], p_movement_type[{{ source }}],
                {{ quantity }}, {{ unit_cost }}, {{ amount }}, {{ provisional }}, null::integer, null::text, null::jsonb)
{%- endmacro %}

{#- An open layer `v_node`: the identifying columns name the movement that brought it to its location. -#}
{% macro _open_layer_entry() -%}
row('open_layer'::text, v_recv, null::integer,
                p_movement_id[v_recv], p_source_name[v_recv], p_event_id[v_recv], p_occurred_at[v_recv],
                p_movement_type[v_recv], p_location[v_recv],
                null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric,
                null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric,
                null::numeric, 'fifo'::text, null::text,
                null::text, null::text, null::text, null::timestamptz, null::text,
                p_movement_id[ly_src[v_node]], p_event_id[ly_src[v_node]], p_movement_type[ly_src[v_node]],
                ly_qty[v_node], ly_cost[v_node], ly_qty[v_node] * ly_cost[v_node], null::numeric, v_node, null::text, null::jsonb)
{%- endmacro %}

{#- Movement i is a sale or receipt some return may reference (m_group[i] is set): the first one
    valued in each of its groups is the one a return of that group references; a sale's unit costs are
    kept for customer returns. Or it is a return (which always has a group): the first of its group is
    remembered for the checkpoints. -#}
{% macro _register_candidate(fifo_unit, avco_unit) -%}
if v_type = 'sale' or v_type = 'receipt' then
                    if first_in_group[m_group[i]] is null then first_in_group[m_group[i]] := i; end if;
                    if first_return[m_group[i]] is not null then
                        -- a return of this group valued before: a checkpoint between them would not see
                        -- this candidate (rule: see _capture_checkpoint)
                        v_k := n_cp;
                        while v_k > 0 and cp_pos[v_k] >= first_return[m_group[i]] loop
                            cp_valid[v_k] := false;
                            v_k := v_k - 1;
                        end loop;
                    end if;
                    if first_in_source_group[m_source_group[i]] is null then
                        first_in_source_group[m_source_group[i]] := i;
                    end if;
                    if v_type = 'sale' then sale_fifo[i] := {{ fifo_unit }}; sale_avco[i] := {{ avco_unit }}; end if;
                elsif first_return[m_group[i]] is null then
                    -- a return: checkpoints from here on wait for its group's later candidates
                    first_return[m_group[i]] := i;
                end if;
{%- endmacro %}

{#- The position of the sale / receipt return i references, if valued before it (else null). -#}
{% macro _referenced() -%}
case when m_source_group[i] is not null then first_in_source_group[m_source_group[i]]
                    else first_in_group[m_group[i]] end
{%- endmacro %}

{#- Append a FIFO layer to location li's queue. -#}
{% macro _push_layer(quantity, cost, source) -%}
n_layers := n_layers + 1;
                ly_qty[n_layers] := {{ quantity }}; ly_cost[n_layers] := {{ cost }};
                ly_src[n_layers] := {{ source }}; ly_recv[n_layers] := i; ly_next[n_layers] := 0;
                if layer_tail[li] = 0 then layer_head[li] := n_layers; else ly_next[layer_tail[li]] := n_layers; end if;
                layer_tail[li] := n_layers;
{%- endmacro %}

{#- Put a piece that left on a transfer_out into the in-transit pool v_key (FIFO side). -#}
{% macro _push_pool_piece(quantity, cost, source) -%}
n_pieces := n_pieces + 1;
                tp_qty[n_pieces] := {{ quantity }}; tp_cost[n_pieces] := {{ cost }};
                tp_src[n_pieces] := {{ source }}; tp_next[n_pieces] := 0; tp_key[n_pieces] := v_key;
                if coalesce(pool_tail[v_key], 0) = 0 then pool_head[v_key] := n_pieces;
                else tp_next[pool_tail[v_key]] := n_pieces; end if;
                pool_tail[v_key] := n_pieces;
{%- endmacro %}

{#- Take v_take = least(v_left, layer) from layer v_node, booking one FIFO `layer` cost line. -#}
{% macro _take_from_layer() -%}
v_take := least(v_left, ly_qty[v_node]);
                    v_cost := ly_cost[v_node];
                    v_amount := v_take * v_cost;
                    ly_qty[v_node] := ly_qty[v_node] - v_take;
                    v_left := v_left - v_take;
                    v_total := v_total + v_amount;
                    if v_first_cost is null then v_first_cost := v_cost;
                    elsif v_cost <> v_first_cost then v_mixed := true; end if;
                    v_line := v_line + 1;
                    return next {{ _cost_line_entry("v_line", "'fifo'", "'layer'", "i", "ly_src[v_node]", "v_take", "v_cost", "v_amount") }};
                    if v_key is not null then
                        {{ _push_pool_piece("v_take", "v_cost", "ly_src[v_node]") }}
                    end if;
{%- endmacro %}


{#- FIFO inbound of the pieces in_qty/in_cost/in_src[1 .. n_in]: each settles negative stock first
    (revaluation lines), the rest becomes a layer. -#}
{% macro _receive_pieces() -%}
v_total := 0;
                v_reval := 0;
                v_first_cost := null;
                v_mixed := false;
                v_line := 0;
                for k in 1 .. n_in loop
                    v_cost := in_cost[k];
                    v_left := in_qty[k];
                    v_total := v_total + v_left * v_cost;
                    if v_first_cost is null then v_first_cost := v_cost;
                    elsif v_cost <> v_first_cost then v_mixed := true; end if;
                    while v_left > 0 and backlog_head[li] > 0 loop
                        v_node := backlog_head[li];
                        v_take := least(v_left, bk_qty[v_node]);
                        v_amount := v_take * (v_cost - bk_cost[v_node]);
                        v_reval := v_reval + v_amount;
                        v_line := v_line + 1;
                        return next {{ _cost_line_entry("v_line", "'fifo'", "'revaluation'", "bk_issue[v_node]", "in_src[k]",
                                                        "v_take", "v_cost", "v_amount", "bk_cost[v_node]") }};
                        bk_qty[v_node] := bk_qty[v_node] - v_take;
                        v_left := v_left - v_take;
                        if bk_qty[v_node] = 0 then
                            backlog_head[li] := bk_next[v_node];
                            if backlog_head[li] = 0 then backlog_tail[li] := 0; end if;
                        end if;
                    end loop;
                    if v_left > 0 then
                        {{ _push_layer("v_left", "v_cost", "in_src[k]") }}
                    end if;
                    last_cost[li] := v_cost;
                end loop;
                f_unit := case when v_mixed then {{ valuation_schema() }}.valuation_divide(v_total, v_q) else v_first_cost end;
{%- endmacro %}

{#- Checkpoint after movement i (see "Resuming" at the top): everything the pass carries, as jsonb. Live
    FIFO layers, negative-stock pieces and in-transit pieces are the nodes with a quantity left
    (consumed nodes are unlinked when they reach zero, and each location's / pool's list is in node
    order, so restoring them in node order rebuilds the lists exactly); pools that are empty (no
    pieces, AVCO quantity and value zero) are left out (a later movement of such a pool makes the
    model resume from further back). `refs` names the movements those nodes point at, which a
    resumed pass no longer receives. Numbers go through jsonb as numeric: value and scale survive. Built
    as json (text) and cast to jsonb once: the same jsonb as building it with the jsonb functions, without
    converting each nested array to jsonb and back. -#}
{% macro _capture_checkpoint() -%}
n_cp := n_cp + 1;
            cp_pos[n_cp] := i;
            cp_valid[n_cp] := true;
            cp_fp[n_cp] := v_fp_count::text || ':' || v_fp_sum::text;
            if v_type = 'transfer_in' then
                -- its order key may be its pair's: not a position the model can resume after
                cp_state[n_cp] := null;
            else
                cp_state[n_cp] := (
                    with live_layers as materialized (
                        select k, ly_qty[k] as qty, ly_cost[k] as cost, ly_src[k] as src, ly_recv[k] as recv
                        from generate_series(
                            coalesce((select min(h) from unnest(layer_head) as h where h > 0), n_layers + 1), n_layers
                        ) as k
                        where ly_qty[k] > 0
                    ),
                    live_backlog as materialized (
                        select k, bk_qty[k] as qty, bk_cost[k] as cost, bk_issue[k] as issue
                        from generate_series(
                            coalesce((select min(h) from unnest(backlog_head) as h where h > 0), n_backlog + 1), n_backlog
                        ) as k
                        where bk_qty[k] > 0
                    ),
                    live_pieces as materialized (
                        select k, pool_ref[tp_key[k]] as ref, tp_qty[k] as qty, tp_cost[k] as cost, tp_src[k] as src
                        from generate_series(
                            coalesce((select min(h) from unnest(pool_head) as h where h > 0), n_pieces + 1), n_pieces
                        ) as k
                        where tp_qty[k] > 0
                    ),
                    live_pools as materialized (
                        select k, pool_ref[k] as ref, pool_avco_qty[k] as qty, pool_avco_val[k] as val
                        from generate_subscripts(pool_ref, 1) as k
                        where pool_ref[k] is not null
                            and (coalesce(pool_head[k], 0) > 0 or pool_avco_qty[k] <> 0 or pool_avco_val[k] <> 0)
                    )
                    select json_build_object(
                        'fp_count', v_fp_count, 'fp_sum', v_fp_sum, 'n_layers', n_layers,
                        'locs', to_json(v_locs), 'loc_qty', to_json(loc_qty), 'fifo_val', to_json(fifo_val),
                        'last_cost', to_json(last_cost), 'avco_val', to_json(avco_val), 'avco_avg', to_json(avco_avg),
                        'in_transit', json_build_array(tr_qty, tr_fifo, tr_avco),
                        'layers', (
                            select coalesce(json_agg(json_build_array(
                                k, array_position(v_locs, p_location[recv]), qty, cost, src, recv
                            ) order by k), '[]')
                            from live_layers
                        ),
                        'backlog', (
                            select coalesce(json_agg(json_build_array(
                                array_position(v_locs, p_location[issue]), qty, cost, issue
                            ) order by k), '[]')
                            from live_backlog
                        ),
                        'pools', (
                            select coalesce(json_agg(json_build_array(ref, qty, val) order by k), '[]') from live_pools
                        ),
                        'pool_refs', (select coalesce(json_agg(ref order by k), '[]') from live_pools),
                        'pieces', (
                            select coalesce(json_agg(json_build_array(ref, qty, cost, src) order by k), '[]')
                            from live_pieces
                        ),
                        'refs', (
                            select coalesce(json_agg(json_build_array(
                                r, p_movement_id[r], p_source_name[r], p_event_id[r], p_occurred_at[r],
                                p_movement_type[r], p_location[r]
                            ) order by r), '[]')
                            from (
                                select src as r from live_layers
                                union select recv from live_layers
                                union select issue from live_backlog
                                union select src from live_pieces
                            ) as referenced
                        )
                    )::jsonb
                );
            end if;
{%- endmacro %}

{% macro postgres__create_valuation_functions() -%}
{%- set schema = valuation_schema() -%}
-- a / b rounded half away from zero to 20 decimal places, exactly (div() truncates an exact quotient;
-- `round(a / b, 20)` would round twice, once at the scale numeric division picks for itself).
-- A one-expression SQL function: the planner inlines it into the expressions that call it.
create or replace function {{ schema }}.valuation_divide(a numeric, b numeric)
returns numeric
language sql immutable strict parallel safe
return sign(a) * sign(b)
    * div(2 * abs(a) * 100000000000000000000 + abs(b), 2 * abs(b))
    * 0.00000000000000000001;

-- The engine before issue 4 returned TABLE(...) and took positions of referenced movements; its
-- signature differs, so `create or replace` would add an overload beside it rather than replace it.
drop function if exists {{ schema }}.valuation_post_sku(
    text[], text[], text[], timestamptz[], text[], text[], numeric[], numeric[], integer[], integer[]
);
-- ... and the one before resuming (issue 4's incremental goal) took 11 arrays.
drop function if exists {{ schema }}.valuation_post_sku(
    text[], text[], text[], timestamptz[], text[], text[], numeric[], numeric[], integer[], integer[], integer[]
);
-- ... and the one before the engine numbered groups and pools itself took them as integers.
drop function if exists {{ schema }}.valuation_post_sku(
    text[], text[], text[], timestamptz[], text[], text[], numeric[], numeric[], integer[], integer[], integer[],
    bigint[], text[], integer[], numeric[], numeric[], integer, jsonb, integer, integer
);

-- Inputs are one SKU's movements in valuation order (index = valuation_sequence). The identifying
-- arrays (movement_id … occurred_at) are only echoed into the output, so no join is needed afterwards.
-- References are resolved here, by one statement per SKU (window functions inside the function: the
-- calling model needs none, so that it can value SKUs in parallel workers; window functions are parallel
-- restricted). customer_return → sale and vendor_return → receipt, by event_id within the SKU (the
-- movements given): a movement of the same source first, else the first of any source, valued before
-- the return. The engine, meeting sales and receipts in valuation order, remembers the first of each
-- group (kind and event_id; and of each source within it) that some return names; a return whose own
-- source has a candidate in its group references that one (valued before it or not).
--   p_reference           a customer_return / vendor_return: its reference; a transfer whose reference
--                         has a transfer_out in the SKU (the model pairs them over the SKU's whole
--                         history): that reference, which names the pair's in-transit pool (pools are
--                         numbered in the order of their references, as checkpoints list them, and saved
--                         by reference); else null.
-- Checkpoints and resuming (null / not given: no checkpoints, the pass starts at 1 with nothing carried):
--   p_row_hash            the ledger row's hash (the model's row_hash): the pass keeps count and sum of
--                         them and emits a `state` entry (checkpoint) at the end and at every
--                         p_checkpoint_interval-th position among the last p_checkpoints × that many
--                         (earlier ones would never be resumed from: the model looks no further back);
--   p_first, p_state      resume: positions 1 .. p_first - 1 are valued already and p_state is the
--                         checkpoint saved after p_first - 1; the arrays are null there;
--   p_ref_position, p_ref_fifo, p_ref_avco, p_ref_same_source
--                         a return whose sale / receipt lies before p_first (the model found it in the
--                         stored entries, own source first): its position, the unit costs that sale left
--                         at, and whether it is of the return's own source. It is the one referenced
--                         unless it is of another source and the return's own source has one from
--                         p_first on.
create or replace function {{ schema }}.valuation_post_sku(
    p_movement_id text[],
    p_source_name text[],
    p_event_id text[],
    p_occurred_at timestamptz[],
    p_location text[],
    p_movement_type text[],
    p_quantity numeric[],
    p_unit_cost numeric[],
    p_reference text[],
    p_row_hash bigint[],
    p_ref_position integer[],
    p_ref_fifo numeric[],
    p_ref_avco numeric[],
    p_ref_same_source boolean[],
    p_first integer,
    p_state jsonb,
    p_checkpoint_interval integer,
    p_checkpoints integer
)
returns setof record
language plpgsql immutable parallel safe
as $fn$
declare
    n_rows integer := coalesce(cardinality(p_quantity), 0);
    i integer;
    -- per location (index into v_locs)
    v_locs text[] := '{}';
    li integer;
    loc_qty numeric[] := '{}';
    fifo_val numeric[] := '{}';
    last_cost numeric[] := '{}';
    layer_head integer[] := '{}';
    layer_tail integer[] := '{}';
    backlog_head integer[] := '{}';
    backlog_tail integer[] := '{}';
    avco_val numeric[] := '{}';
    avco_avg numeric[] := '{}';
    -- FIFO layers: a linked list per location, nodes in parallel arrays
    n_layers integer := 0;
    ly_qty numeric[] := '{}';
    ly_cost numeric[] := '{}';
    ly_src integer[] := '{}';
    ly_recv integer[] := '{}';
    ly_next integer[] := '{}';
    -- FIFO negative-stock backlog: provisional pieces, a linked list per location
    n_backlog integer := 0;
    bk_qty numeric[] := '{}';
    bk_cost numeric[] := '{}';
    bk_issue integer[] := '{}';
    bk_next integer[] := '{}';
    -- per movement, the numbers of its match group and of its source's group within it (a sale / receipt
    -- some return names, and the returns), its pool (a transfer), and the position of a return's sale /
    -- receipt before p_first if that is the one it references
    m_group integer[];
    m_source_group integer[];
    t_key integer[];
    m_ref_position integer[];
    -- in-transit pools, keyed by t_key
    n_pieces integer := 0;
    tp_qty numeric[] := '{}';
    tp_cost numeric[] := '{}';
    tp_src integer[] := '{}';
    tp_next integer[] := '{}';
    tp_key integer[] := '{}';
    pool_ref text[] := '{}';
    pool_head integer[] := '{}';
    pool_tail integer[] := '{}';
    pool_avco_qty numeric[] := '{}';
    pool_avco_val numeric[] := '{}';
    tr_qty numeric := 0;
    tr_fifo numeric := 0;
    tr_avco numeric := 0;
    -- per match group: the position of its first sale / receipt valued so far; the unit costs applied by
    -- such sales, by position
    first_in_group integer[] := '{}';
    first_in_source_group integer[] := '{}';
    sale_fifo numeric[] := '{}';
    sale_avco numeric[] := '{}';
    -- inbound FIFO pieces of a transfer_in (or of an inbound that settles negative stock)
    n_in integer;
    in_qty numeric[] := '{}';
    in_cost numeric[] := '{}';
    in_src integer[] := '{}';
    -- working variables
    v_movement_id text;
    v_source_name text;
    v_event_id text;
    v_occurred_at timestamptz;
    v_type text;
    v_location text;
    v_key integer;
    v_ref integer;
    v_delta numeric;
    v_q numeric;
    v_left numeric;
    v_take numeric;
    v_cost numeric;
    v_total numeric;
    v_first_cost numeric;
    v_mixed boolean;
    v_line integer;
    v_node integer;
    v_prev integer;
    v_next integer;
    v_recv integer;
    v_reval numeric;
    v_amount numeric;
    v_new_val numeric;
    v_avco_cost numeric;
    v_avco_unit numeric;
    v_taken numeric;
    v_taken_val numeric;
    f_unit numeric;
    f_change numeric;
    a_change numeric;
    a_reval numeric;
    -- checkpoints: fingerprint of the positions valued so far; per match group the first return met;
    -- the states captured, valid unless a candidate of a group with an earlier return came after them
    v_fp_count bigint := 0;
    v_fp_sum numeric := 0;
    first_return integer[] := '{}';
    n_cp integer := 0;
    cp_pos integer[] := '{}';
    cp_valid boolean[] := '{}';
    cp_fp text[] := '{}';
    cp_state jsonb[] := '{}';
    v_k integer;
    v_keys jsonb;
    v_max_key integer;
    v_rec record;
    v_seg_start integer;
    v_seg_end integer;
    v_first integer;
begin
    -- the references resolved to numbers (dense, from 1; a pool's number follows its reference's order).
    -- mk: the group's key, the kind and event_id (a return: the kind it references, and its reference).
    -- Only the positions from v_first on: when resuming, the ones before are null (valued already) and
    -- would take no number (null keys rank after all others), so leaving them out numbers the same; the
    -- results are led by as many nulls, so that the index stays the position. (A resumed SKU's arrays
    -- are as long as its history: sorting its nulls was most of a resumed pass's time.)
    v_first := coalesce(p_first, 1);
    select
        array_fill(null::integer, array[v_first - 1]) || array_agg(g order by n),
        array_fill(null::integer, array[v_first - 1]) || array_agg(sg order by n),
        array_fill(null::integer, array[v_first - 1]) || array_agg(tk order by n),
        array_fill(null::integer, array[v_first - 1]) || array_agg(rp order by n)
        into m_group, m_source_group, t_key, m_ref_position
    from (
        select
            n,
            case when concerned then dense_rank() over (order by mk collate "C") end as g,
            case when by_source then dense_rank() over (order by mk collate "C", src collate "C") end as sg,
            case when is_transfer and ref is not null then dense_rank() over (
                order by case when is_transfer then ref end collate "default"
            ) end as tk,
            case when is_return and (same_source or not by_source) then rp end as rp
        from (
            select
                *,
                -- a sale / receipt: its group has a return; a return: its own source has a candidate
                concerned and (not is_return or bool_or(not is_return) over (partition by mk, src)) as by_source
            from (
                select
                    *,
                    coalesce(bool_or(is_return) over (partition by mk), false) as concerned
                from (
                    select
                        n, src, ref, rp, same_source,
                        typ in ('customer_return', 'vendor_return') as is_return,
                        typ in ('transfer_out', 'transfer_in') as is_transfer,
                        case
                            when typ in ('sale', 'receipt') then typ || coalesce(':' || eid, '')
                            when typ = 'customer_return' then 'sale' || coalesce(':' || ref, '')
                            when typ = 'vendor_return' then 'receipt' || coalesce(':' || ref, '')
                        end as mk
                    from unnest(
                        p_movement_type[v_first:], p_event_id[v_first:], p_source_name[v_first:],
                        p_reference[v_first:], p_ref_position[v_first:], p_ref_same_source[v_first:]
                    ) with ordinality as t(typ, eid, src, ref, rp, same_source, n)
                ) as typed
            ) as grouped
        ) as sourced
    ) as numbered;
    if p_row_hash is not null then
        -- the reference of each pool, to save pools by reference
        v_keys := coalesce((
            select jsonb_object_agg(r, k) from unnest(p_reference[v_first:], t_key[v_first:]) as t(r, k) where k is not null
        ), '{}');
        for v_rec in select key as r, value::integer as k from jsonb_each_text(v_keys) loop
            pool_ref[v_rec.k] := v_rec.r;
        end loop;
    end if;
    if p_state is not null then
        ------------------------------------------------------------------ resume from a checkpoint
        v_fp_count := (p_state->>'fp_count')::bigint;
        v_fp_sum := (p_state->>'fp_sum')::numeric;
        n_layers := (p_state->>'n_layers')::integer;
        v_locs := array(select x from jsonb_array_elements_text(p_state->'locs') with ordinality as t(x, n) order by n);
        loc_qty := array(select x::numeric from jsonb_array_elements_text(p_state->'loc_qty') with ordinality as t(x, n) order by n);
        fifo_val := array(select x::numeric from jsonb_array_elements_text(p_state->'fifo_val') with ordinality as t(x, n) order by n);
        last_cost := array(select x::numeric from jsonb_array_elements_text(p_state->'last_cost') with ordinality as t(x, n) order by n);
        avco_val := array(select x::numeric from jsonb_array_elements_text(p_state->'avco_val') with ordinality as t(x, n) order by n);
        avco_avg := array(select x::numeric from jsonb_array_elements_text(p_state->'avco_avg') with ordinality as t(x, n) order by n);
        layer_head := array_fill(0, array[cardinality(v_locs)]);
        layer_tail := layer_head;
        backlog_head := layer_head;
        backlog_tail := layer_head;
        tr_qty := (p_state->'in_transit'->>0)::numeric;
        tr_fifo := (p_state->'in_transit'->>1)::numeric;
        tr_avco := (p_state->'in_transit'->>2)::numeric;
        -- the movements before p_first that carried state points at
        for v_rec in select e from jsonb_array_elements(p_state->'refs') as t(e) loop
            v_k := (v_rec.e->>0)::integer;
            p_movement_id[v_k] := v_rec.e->>1;
            p_source_name[v_k] := v_rec.e->>2;
            p_event_id[v_k] := v_rec.e->>3;
            p_occurred_at[v_k] := (v_rec.e->>4)::timestamptz;
            p_movement_type[v_k] := v_rec.e->>5;
            p_location[v_k] := v_rec.e->>6;
        end loop;
        for v_rec in select e from jsonb_array_elements(p_state->'layers') with ordinality as t(e, n) order by n loop
            v_node := (v_rec.e->>0)::integer;
            li := (v_rec.e->>1)::integer;
            ly_qty[v_node] := (v_rec.e->>2)::numeric; ly_cost[v_node] := (v_rec.e->>3)::numeric;
            ly_src[v_node] := (v_rec.e->>4)::integer; ly_recv[v_node] := (v_rec.e->>5)::integer; ly_next[v_node] := 0;
            if layer_tail[li] = 0 then layer_head[li] := v_node; else ly_next[layer_tail[li]] := v_node; end if;
            layer_tail[li] := v_node;
        end loop;
        for v_rec in select e from jsonb_array_elements(p_state->'backlog') with ordinality as t(e, n) order by n loop
            li := (v_rec.e->>0)::integer;
            n_backlog := n_backlog + 1;
            bk_qty[n_backlog] := (v_rec.e->>1)::numeric; bk_cost[n_backlog] := (v_rec.e->>2)::numeric;
            bk_issue[n_backlog] := (v_rec.e->>3)::integer; bk_next[n_backlog] := 0;
            if backlog_tail[li] = 0 then backlog_head[li] := n_backlog; else bk_next[backlog_tail[li]] := n_backlog; end if;
            backlog_tail[li] := n_backlog;
        end loop;
        -- pools keep the key the model gave their reference in this pass, or one of their own
        v_max_key := coalesce((select max(k) from unnest(t_key) as k), 0);
        for v_rec in select e, n from jsonb_array_elements(p_state->'pools') with ordinality as t(e, n) loop
            v_key := coalesce((v_keys->>(v_rec.e->>0))::integer, v_max_key + v_rec.n::integer);
            v_keys := v_keys || jsonb_build_object(v_rec.e->>0, v_key);
            pool_ref[v_key] := v_rec.e->>0;
            pool_avco_qty[v_key] := (v_rec.e->>1)::numeric;
            pool_avco_val[v_key] := (v_rec.e->>2)::numeric;
        end loop;
        for v_rec in select e from jsonb_array_elements(p_state->'pieces') with ordinality as t(e, n) order by n loop
            v_key := (v_keys->>(v_rec.e->>0))::integer;
            {{ _push_pool_piece("(v_rec.e->>1)::numeric", "(v_rec.e->>2)::numeric", "(v_rec.e->>3)::integer") }}
        end loop;
        v_key := null;
    end if;

    -- The movements in segments that end where a checkpoint may be taken (one segment, all of them,
    -- without checkpoints): no per-movement test for it.
    v_seg_start := coalesce(p_first, 1);
    while v_seg_start <= n_rows loop
        v_seg_end := n_rows;
        if p_row_hash is not null then
            -- the next multiple of the interval among the last p_checkpoints of them, else the end
            v_k := greatest(v_seg_start, n_rows - p_checkpoints * p_checkpoint_interval + 1);
            v_k := ((v_k + p_checkpoint_interval - 1) / p_checkpoint_interval) * p_checkpoint_interval;
            if v_k < n_rows then v_seg_end := v_k; end if;
        end if;
        for i in v_seg_start .. v_seg_end loop
            -- the identifying values of the movement, read once for all its entries
            v_movement_id := p_movement_id[i];
            v_source_name := p_source_name[i];
            v_event_id := p_event_id[i];
            v_occurred_at := p_occurred_at[i];
            v_type := p_movement_type[i];
            v_location := p_location[i];
            li := array_position(v_locs, v_location);
            if li is null then
                v_locs := v_locs || v_location;
                li := cardinality(v_locs);
                loc_qty[li] := 0; fifo_val[li] := 0; last_cost[li] := 0;
                layer_head[li] := 0; layer_tail[li] := 0; backlog_head[li] := 0; backlog_tail[li] := 0;
                avco_val[li] := 0; avco_avg[li] := 0;
            end if;
            -- a count is valued as the adjustment (counted − book quantity then)
            v_delta := case when v_type = 'physical_count' then p_quantity[i] - loc_qty[li] else p_quantity[i] end;

            if v_delta < 0 then
                ------------------------------------------------------------------ issue
                v_q := -v_delta;
                -- a transfer_out with a pair puts what leaves into the pair's in-transit pool
                v_key := case when v_type = 'transfer_out' then t_key[i] end;
                if ly_qty[layer_head[li]] > v_q and v_key is null and v_type <> 'vendor_return' then
                    -- FIFO, the common case: the oldest layer covers the issue (what the general path below
                    -- computes for it: one `layer` line of v_q at its cost, 0 + v_q × cost in total)
                    f_unit := ly_cost[layer_head[li]];
                    v_total := v_q * f_unit;
                    ly_qty[layer_head[li]] := ly_qty[layer_head[li]] - v_q;
                    return next {{ _cost_line_entry("1", "'fifo'", "'layer'", "i", "ly_src[layer_head[li]]", "v_q", "f_unit", "v_total") }};
                else
                    v_node := layer_head[li];
                    -- FIFO: pass 1 takes the referenced receipt's layers (vendor returns), pass 2 the oldest
                    v_left := v_q;
                    v_total := 0;
                    v_first_cost := null;
                    v_mixed := false;
                    v_line := 0;
                    v_ref := case when v_type = 'vendor_return' then coalesce(m_ref_position[i], {{ _referenced() }}) end;
                    if v_ref is not null then
                        v_prev := 0;
                        while v_node > 0 and v_left > 0 loop
                            v_next := ly_next[v_node];
                            if ly_src[v_node] = v_ref then
                                {{ _take_from_layer() }}
                            end if;
                            if ly_qty[v_node] = 0 then
                                if v_prev = 0 then layer_head[li] := v_next; else ly_next[v_prev] := v_next; end if;
                                if layer_tail[li] = v_node then layer_tail[li] := v_prev; end if;
                            else
                                v_prev := v_node;
                            end if;
                            v_node := v_next;
                        end loop;
                        v_node := layer_head[li];
                    end if;
                    while v_node > 0 and v_left > 0 loop
                        {{ _take_from_layer() }}
                        if ly_qty[v_node] = 0 then
                            v_node := ly_next[v_node];
                            layer_head[li] := v_node;
                            if v_node = 0 then layer_tail[li] := 0; end if;
                        end if;
                    end loop;
                    if v_left > 0 then
                        -- beyond the layers: provisional at the last known unit cost, remembered for settling
                        v_cost := last_cost[li];
                        v_amount := v_left * v_cost;
                        v_total := v_total + v_amount;
                        if v_first_cost is null then v_first_cost := v_cost;
                        elsif v_cost <> v_first_cost then v_mixed := true; end if;
                        n_backlog := n_backlog + 1;
                        bk_qty[n_backlog] := v_left; bk_cost[n_backlog] := v_cost;
                        bk_issue[n_backlog] := i; bk_next[n_backlog] := 0;
                        if backlog_tail[li] = 0 then backlog_head[li] := n_backlog;
                        else bk_next[backlog_tail[li]] := n_backlog; end if;
                        backlog_tail[li] := n_backlog;
                        v_line := v_line + 1;
                        return next {{ _cost_line_entry("v_line", "'fifo'", "'provisional'", "i", "null", "v_left", "v_cost", "v_amount") }};
                        if v_key is not null then
                            {{ _push_pool_piece("v_left", "v_cost", "i") }}
                        end if;
                    end if;
                    f_unit := case when v_mixed then {{ schema }}.valuation_divide(v_total, v_q) else v_first_cost end;
                end if;
                fifo_val[li] := fifo_val[li] - v_total;

                -- AVCO: at the average, which stays; the issue that reaches zero takes the whole value
                v_amount := case when loc_qty[li] - v_q = 0 then avco_val[li] else v_q * avco_avg[li] end;
                avco_val[li] := avco_val[li] - v_amount;
                if v_key is not null then
                    pool_avco_qty[v_key] := coalesce(pool_avco_qty[v_key], 0) + v_q;
                    pool_avco_val[v_key] := coalesce(pool_avco_val[v_key], 0) + v_amount;
                    tr_qty := tr_qty + v_q;
                    tr_fifo := tr_fifo + v_total;
                    tr_avco := tr_avco + v_amount;
                end if;
                return next {{ _cost_line_entry("1", "'avco'", "'average'", "i", "null", "v_q", "avco_avg[li]", "v_amount") }};

                loc_qty[li] := loc_qty[li] + v_delta;
                if m_group[i] is not null then
                    {{ _register_candidate("f_unit", "avco_avg[li]") }}
                end if;
                return next {{ _movement_entry("v_delta", "f_unit", "-v_total", "0::numeric",
                                               "avco_avg[li]", "-v_amount", "0::numeric") }};

            elsif v_delta > 0 then
                ------------------------------------------------------------------ inbound
                v_q := v_delta;
                if v_type = 'transfer_in' then
                    -- FIFO: the pieces of the pool, oldest first; beyond it, the fallback cost
                    v_key := t_key[i];
                    n_in := 0;
                    v_left := v_q;
                    if v_key is not null then
                        v_node := coalesce(pool_head[v_key], 0);
                        while v_left > 0 and v_node > 0 loop
                            v_take := least(v_left, tp_qty[v_node]);
                            n_in := n_in + 1;
                            in_qty[n_in] := v_take; in_cost[n_in] := tp_cost[v_node]; in_src[n_in] := tp_src[v_node];
                            tp_qty[v_node] := tp_qty[v_node] - v_take;
                            v_left := v_left - v_take;
                            tr_fifo := tr_fifo - v_take * tp_cost[v_node];
                            if tp_qty[v_node] = 0 then
                                v_node := tp_next[v_node];
                                pool_head[v_key] := v_node;
                                if v_node = 0 then pool_tail[v_key] := 0; end if;
                            end if;
                        end loop;
                    end if;
                    if v_left > 0 then
                        n_in := n_in + 1;
                        in_qty[n_in] := v_left; in_cost[n_in] := last_cost[li]; in_src[n_in] := i;
                    end if;
                    -- AVCO: the pool's value for what it holds, the receiver's average beyond
                    v_taken := case when v_key is not null then least(v_q, coalesce(pool_avco_qty[v_key], 0)) else 0 end;
                    if v_taken = 0 then
                        v_taken_val := 0;
                    elsif v_taken = pool_avco_qty[v_key] then
                        v_taken_val := pool_avco_val[v_key];
                    else
                        v_taken_val := v_taken * {{ schema }}.valuation_divide(pool_avco_val[v_key], pool_avco_qty[v_key]);
                    end if;
                    if v_key is not null then
                        pool_avco_qty[v_key] := coalesce(pool_avco_qty[v_key], 0) - v_taken;
                        pool_avco_val[v_key] := coalesce(pool_avco_val[v_key], 0) - v_taken_val;
                    end if;
                    tr_qty := tr_qty - v_taken;
                    tr_avco := tr_avco - v_taken_val;
                    v_avco_cost := v_taken_val + (v_q - v_taken) * avco_avg[li];
                    v_avco_unit := case when v_taken > 0 then {{ schema }}.valuation_divide(v_avco_cost, v_q) else avco_avg[li] end;
                    {{ _receive_pieces() }}
                else
                    -- one piece: a referenced customer_return at its sale's unit costs (once that sale is
                    -- valued), anything else at its own cost; the fallback is the last cost / the average
                    if v_type = 'customer_return' and m_ref_position[i] is not null then
                        -- its sale was valued before p_first: the model brings the costs it left at
                        v_cost := coalesce(p_ref_fifo[i], last_cost[li]);
                        v_avco_unit := coalesce(p_ref_avco[i], avco_avg[li]);
                    elsif v_type = 'customer_return' then
                        v_ref := {{ _referenced() }};
                        v_cost := coalesce(sale_fifo[v_ref], last_cost[li]);
                        v_avco_unit := coalesce(sale_avco[v_ref], avco_avg[li]);
                    else
                        v_cost := coalesce(p_unit_cost[i], last_cost[li]);
                        v_avco_unit := coalesce(p_unit_cost[i], avco_avg[li]);
                    end if;
                    v_avco_cost := v_q * v_avco_unit;
                    if backlog_head[li] = 0 then
                        -- FIFO, the common case: no negative stock to settle, the piece becomes a layer
                        v_total := v_q * v_cost;
                        v_reval := 0;
                        f_unit := v_cost;
                        {{ _push_layer("v_q", "v_cost", "i") }}
                        last_cost[li] := v_cost;
                    else
                        n_in := 1; in_qty[1] := v_q; in_cost[1] := v_cost; in_src[1] := i;
                        {{ _receive_pieces() }}
                    end if;
                end if;

                f_change := v_total - v_reval;
                fifo_val[li] := fifo_val[li] + f_change;

                -- AVCO: weighted average; at or below zero the average becomes the inbound cost (rule 11)
                -- (loc_qty and avco_val still hold the position before the movement)
                if loc_qty[li] > 0 then
                    v_new_val := avco_val[li] + v_avco_cost;
                    avco_avg[li] := {{ schema }}.valuation_divide(v_new_val, loc_qty[li] + v_q);
                else
                    avco_avg[li] := v_avco_unit;
                    v_new_val := (loc_qty[li] + v_q) * v_avco_unit;
                end if;
                a_change := v_new_val - avco_val[li];
                avco_val[li] := v_new_val;
                a_reval := v_avco_cost - a_change;
                if loc_qty[li] < 0 or a_reval <> 0 then
                    return next {{ _cost_line_entry("1", "'avco'", "'revaluation'", "i", "i", "greatest(-loc_qty[li], 0)",
                                                    "v_avco_unit", "a_reval") }};
                end if;

                loc_qty[li] := loc_qty[li] + v_delta;
                if m_group[i] is not null then
                    {{ _register_candidate("f_unit", "v_avco_unit") }}
                end if;
                return next {{ _movement_entry("v_delta", "f_unit", "f_change", "v_reval",
                                               "v_avco_unit", "a_change", "a_reval") }};

            else
                ------------------------------------------------------------------ nothing moves
                loc_qty[li] := loc_qty[li] + v_delta;
                if m_group[i] is not null then
                    {{ _register_candidate("null", "null") }}
                end if;
                return next {{ _movement_entry("v_delta", "null::numeric", "0::numeric", "0::numeric",
                                               "null::numeric", "0::numeric", "0::numeric") }};
            end if;
        end loop;

        if p_row_hash is not null then
            ------------------------------------------------------------------ checkpoint after v_seg_end
            i := v_seg_end;
            v_type := p_movement_type[i];
            select v_fp_count + count(*), v_fp_sum + coalesce(sum(h), 0)
                into v_fp_count, v_fp_sum
                from unnest(p_row_hash[v_seg_start:v_seg_end]) as h;
            if i = n_rows or v_type <> 'transfer_in' then
                {{ _capture_checkpoint() }}
            end if;
        end if;
        v_seg_start := v_seg_end + 1;
    end loop;

    -- the FIFO layers still open, per location in consumption order
    for li in 1 .. coalesce(cardinality(v_locs), 0) loop
        v_node := layer_head[li];
        while v_node > 0 loop
            v_recv := ly_recv[v_node];
            return next {{ _open_layer_entry() }};
            v_node := ly_next[v_node];
        end loop;
    end loop;

    -- the checkpoints still valid (the last one always: its fingerprint is the SKU's)
    for v_k in 1 .. n_cp loop
        if cp_valid[v_k] or cp_pos[v_k] = n_rows then
            v_recv := cp_pos[v_k];
            return next row('state'::text, v_recv, null::integer,
                p_movement_id[v_recv], p_source_name[v_recv], p_event_id[v_recv], p_occurred_at[v_recv],
                p_movement_type[v_recv], p_location[v_recv],
                null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric,
                null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric, null::numeric,
                null::numeric, null::text, null::text,
                null::text, null::text, null::text, null::timestamptz, null::text,
                null::text, null::text, null::text, null::numeric, null::numeric, null::numeric, null::numeric,
                null::integer, cp_fp[v_k], case when cp_valid[v_k] then cp_state[v_k] end);
        end if;
    end loop;
end;
$fn$;
{%- endmacro %}


{#- Planner settings (transaction-local, a pre_hook) for a full build of int_valuation_entries_posted, which
    values its parts of SKUs in parallel: the UNION ALL of the parts as a Parallel Append under one Gather
    (each part a serial plan in one worker), rather than parallel scans inside each part (which would
    leave the engine, where the time goes, in one process). The leader only gathers and writes the
    table: when it takes a part itself, it stops draining the workers' queues for as long as its part
    runs, and the workers wait (it still runs everything when no worker could be launched). Hash joins only, besides the engine's lateral
    call: unit tests and a freshly built ledger have no statistics, and the estimates of a part (a hash of
    the sku) are far too low for nested loops or sorts for merge joins to be safe. -#}
{% macro valuation_parallel_settings() -%}
    {{ return(adapter.dispatch('valuation_parallel_settings')()) }}
{%- endmacro %}


{% macro default__valuation_parallel_settings() -%}
{%- endmacro %}


{% macro postgres__valuation_parallel_settings() -%}
set local enable_nestloop = off;
set local enable_mergejoin = off;
set local min_parallel_table_scan_size = '8GB';
set local min_parallel_index_scan_size = '8GB';
set local parallel_setup_cost = 0;
set local parallel_tuple_cost = 0;
set local parallel_leader_participation = off
{%- endmacro %}
