{#-
    The valuation engine: FIFO and AVCO (DESIGN §7), both methods in one ordered pass per SKU.

    This is the only place valuation is computed. `create_valuation_functions()` (a pre_hook of the
    valuation models) installs `valuation_post_sku(...)`; `valuation_post_sku_call(...)` is how a
    model calls it. Both go through `adapter.dispatch` so another warehouse can bring its own engine.

    The function takes one SKU's movements as parallel arrays already in valuation order (index =
    valuation_sequence; references resolved to sequences by the calling model) and returns a tagged
    set of entries: one `movement` entry per movement (both methods side by side), one `cost_line`
    entry per cost-of-goods line, and one `open_layer` entry per FIFO layer still open at the end.
    Taking arrays rather than reading a table keeps the model's own CTEs as its input, so dbt unit
    tests can mock it, and keeps all state in memory: no temp tables, no per-row DML.

    The rules, and every point DESIGN §7 leaves open, are stated in tests/reference/valuation.py, the
    independent reference this function is tested against row for row.
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


{#- `arrays`: the SQL expressions of the input arrays, in the order of valuation_post_sku's arguments. -#}
{% macro valuation_post_sku_call(arrays) -%}
    {{ return(adapter.dispatch('valuation_post_sku_call')(arrays)) }}
{%- endmacro %}


{% macro default__valuation_post_sku_call(arrays) -%}
    {{ exceptions.raise_compiler_error("No valuation engine for adapter '" ~ adapter.type() ~ "'.") }}
{%- endmacro %}


{% macro postgres__valuation_post_sku_call(arrays) -%}
    {{ valuation_schema() }}.valuation_post_sku({{ arrays | join(', ') }})
{%- endmacro %}


{% macro postgres__create_valuation_functions() -%}
{%- set schema = valuation_schema() -%}
-- a / b rounded half away from zero to 20 decimal places, exactly (div() truncates an exact quotient;
-- `round(a / b, 20)` would round twice, once at the scale numeric division picks for itself).
create or replace function {{ schema }}.valuation_divide(a numeric, b numeric)
returns numeric
language sql immutable strict parallel safe
return sign(a) * sign(b)
    * div(2 * abs(a) * 100000000000000000000 + abs(b), 2 * abs(b))
    * 0.00000000000000000001;

-- Inputs are one SKU's movements in valuation order (index = valuation_sequence). The identifying
-- arrays (movement_id … occurred_at) are only echoed into the output, so no join is needed afterwards.
create or replace function {{ schema }}.valuation_post_sku(
    p_movement_id text[],
    p_source_name text[],
    p_event_id text[],
    p_occurred_at timestamptz[],
    p_location text[],
    p_movement_type text[],
    p_quantity numeric[],
    p_unit_cost numeric[],
    p_reference_sequence integer[],
    p_transfer_key integer[]
)
returns table (
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
    layer_sequence integer
)
language plpgsql immutable parallel safe
as $fn$
#variable_conflict use_variable
declare
    n_rows integer := coalesce(array_length(p_quantity, 1), 0);
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
    -- in-transit pools, keyed by the sequence of the pair's first transfer_out
    n_pieces integer := 0;
    tp_qty numeric[] := '{}';
    tp_cost numeric[] := '{}';
    tp_src integer[] := '{}';
    tp_next integer[] := '{}';
    pool_head integer[] := '{}';
    pool_tail integer[] := '{}';
    pool_avco_qty numeric[] := '{}';
    pool_avco_val numeric[] := '{}';
    tr_qty numeric := 0;
    tr_fifo numeric := 0;
    tr_avco numeric := 0;
    -- unit cost applied by each sale, for returns that reference it
    sale_cost_fifo numeric[] := '{}';
    sale_cost_avco numeric[] := '{}';
    -- inbound FIFO pieces of the current movement
    n_in integer;
    in_qty numeric[] := '{}';
    in_cost numeric[] := '{}';
    in_src integer[] := '{}';
    -- working variables
    v_type text;
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
    v_fifo_line integer;
    v_pass integer;
    v_node integer;
    v_prev integer;
    v_next integer;
    v_reval numeric;
    v_amount numeric;
    v_before_qty numeric;
    v_before_val numeric;
    v_new_qty numeric;
    v_new_val numeric;
    v_avg numeric;
    v_avco_cost numeric;
    v_avco_unit numeric;
    v_taken numeric;
    v_taken_val numeric;
    f_unit numeric;
    f_change numeric;
    f_reval numeric;
    a_unit numeric;
    a_change numeric;
    a_reval numeric;
    v_counted numeric;
    v_issue integer;
    v_source integer;
    v_node_recv integer;
begin
    for i in 1 .. n_rows loop
        v_type := p_movement_type[i];
        location := p_location[i];
        valuation_sequence := i;
        movement_id := p_movement_id[i];
        source_name := p_source_name[i];
        event_id := p_event_id[i];
        occurred_at := p_occurred_at[i];
        movement_type := v_type;
        li := array_position(v_locs, location);
        if li is null then
            v_locs := v_locs || location;
            li := array_length(v_locs, 1);
            loc_qty[li] := 0; fifo_val[li] := 0; last_cost[li] := 0;
            layer_head[li] := 0; layer_tail[li] := 0; backlog_head[li] := 0; backlog_tail[li] := 0;
            avco_val[li] := 0; avco_avg[li] := 0;
        end if;
        -- a transfer without a reference has no pair; references must point backwards to count
        v_key := case when v_type in ('transfer_out', 'transfer_in') then p_transfer_key[i] end;
        v_ref := p_reference_sequence[i];
        if v_ref >= i then v_ref := null; end if;

        if v_type = 'physical_count' then
            v_counted := p_quantity[i];
            v_delta := p_quantity[i] - loc_qty[li];
        else
            v_counted := null;
            v_delta := p_quantity[i];
        end if;
        v_fifo_line := 0;

        if v_delta = 0 then
            f_unit := null; f_change := 0; f_reval := 0;
            a_unit := null; a_change := 0; a_reval := 0;

        elsif v_delta < 0 then
            ------------------------------------------------------------------ issue
            v_q := -v_delta;
            v_left := v_q;
            v_total := 0;
            v_first_cost := null;
            v_mixed := false;
            -- FIFO: pass 1 takes the referenced receipt's layers (vendor returns), pass 2 the oldest
            for v_pass in 1 .. 2 loop
                exit when v_left = 0;
                continue when v_pass = 1 and (v_type <> 'vendor_return' or v_ref is null);
                v_prev := 0;
                v_node := layer_head[li];
                while v_node > 0 and v_left > 0 loop
                    v_next := ly_next[v_node];
                    if v_pass = 2 or ly_src[v_node] = v_ref then
                        v_take := least(v_left, ly_qty[v_node]);
                        v_cost := ly_cost[v_node];
                        v_amount := v_take * v_cost;
                        ly_qty[v_node] := ly_qty[v_node] - v_take;
                        v_left := v_left - v_take;
                        v_total := v_total + v_amount;
                        if v_first_cost is null then v_first_cost := v_cost;
                        elsif v_cost <> v_first_cost then v_mixed := true; end if;
                        v_fifo_line := v_fifo_line + 1;
                        {{ _emit_cost_line("v_fifo_line", "'fifo'", "'layer'", "i", "ly_src[v_node]", "v_take", "v_cost", "v_amount", "null") }}
                        if v_key is not null and v_type = 'transfer_out' then
                            n_pieces := n_pieces + 1;
                            tp_qty[n_pieces] := v_take; tp_cost[n_pieces] := v_cost;
                            tp_src[n_pieces] := ly_src[v_node]; tp_next[n_pieces] := 0;
                            if coalesce(pool_tail[v_key], 0) = 0 then pool_head[v_key] := n_pieces;
                            else tp_next[pool_tail[v_key]] := n_pieces; end if;
                            pool_tail[v_key] := n_pieces;
                        end if;
                    end if;
                    if ly_qty[v_node] = 0 then
                        if v_prev = 0 then layer_head[li] := v_next; else ly_next[v_prev] := v_next; end if;
                        if layer_tail[li] = v_node then layer_tail[li] := v_prev; end if;
                    else
                        v_prev := v_node;
                    end if;
                    v_node := v_next;
                end loop;
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
                v_fifo_line := v_fifo_line + 1;
                {{ _emit_cost_line("v_fifo_line", "'fifo'", "'provisional'", "i", "null", "v_left", "v_cost", "v_amount", "null") }}
                if v_key is not null and v_type = 'transfer_out' then
                    n_pieces := n_pieces + 1;
                    tp_qty[n_pieces] := v_left; tp_cost[n_pieces] := v_cost;
                    tp_src[n_pieces] := i; tp_next[n_pieces] := 0;
                    if coalesce(pool_tail[v_key], 0) = 0 then pool_head[v_key] := n_pieces;
                    else tp_next[pool_tail[v_key]] := n_pieces; end if;
                    pool_tail[v_key] := n_pieces;
                end if;
            end if;
            f_unit := case when v_mixed then {{ schema }}.valuation_divide(v_total, v_q) else v_first_cost end;
            f_change := -v_total;
            f_reval := 0;
            fifo_val[li] := fifo_val[li] - v_total;

            -- AVCO: at the average, which stays; the issue that reaches zero takes the whole value
            v_avg := avco_avg[li];
            v_new_qty := loc_qty[li] - v_q;
            v_amount := case when v_new_qty = 0 then avco_val[li] else v_q * v_avg end;
            avco_val[li] := avco_val[li] - v_amount;
            a_unit := v_avg; a_change := -v_amount; a_reval := 0;

            if v_key is not null and v_type = 'transfer_out' then
                pool_avco_qty[v_key] := coalesce(pool_avco_qty[v_key], 0) + v_q;
                pool_avco_val[v_key] := coalesce(pool_avco_val[v_key], 0) + v_amount;
                tr_qty := tr_qty + v_q;
                tr_fifo := tr_fifo + v_total;
                tr_avco := tr_avco + v_amount;
            end if;
            {{ _emit_cost_line("1", "'avco'", "'average'", "i", "null", "v_q", "v_avg", "v_amount", "null") }}

        else
            ------------------------------------------------------------------ inbound
            v_q := v_delta;
            n_in := 0;
            if v_type = 'receipt' and p_unit_cost[i] is not null then
                n_in := 1; in_qty[1] := v_q; in_cost[1] := p_unit_cost[i]; in_src[1] := i;
                v_avco_unit := p_unit_cost[i];
                v_avco_cost := v_q * v_avco_unit;
            elsif v_type = 'customer_return' then
                v_cost := case when v_ref is not null then sale_cost_fifo[v_ref] end;
                n_in := 1; in_qty[1] := v_q; in_cost[1] := coalesce(v_cost, last_cost[li]); in_src[1] := i;
                v_cost := case when v_ref is not null then sale_cost_avco[v_ref] end;
                v_avco_unit := coalesce(v_cost, avco_avg[li]);
                v_avco_cost := v_q * v_avco_unit;
            elsif v_type = 'transfer_in' then
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
            else
                -- adjustment, count above book (or an odd-signed movement): its own cost, else the fallback
                n_in := 1; in_qty[1] := v_q; in_cost[1] := coalesce(p_unit_cost[i], last_cost[li]); in_src[1] := i;
                v_avco_unit := coalesce(p_unit_cost[i], avco_avg[li]);
                v_avco_cost := v_q * v_avco_unit;
            end if;

            -- FIFO: each piece settles negative stock first (revaluation), the rest becomes a layer
            v_total := 0;
            v_reval := 0;
            v_first_cost := null;
            v_mixed := false;
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
                    v_fifo_line := v_fifo_line + 1;
                    {{ _emit_cost_line("v_fifo_line", "'fifo'", "'revaluation'", "bk_issue[v_node]", "in_src[k]", "v_take", "v_cost", "v_amount", "bk_cost[v_node]") }}
                    bk_qty[v_node] := bk_qty[v_node] - v_take;
                    v_left := v_left - v_take;
                    if bk_qty[v_node] = 0 then
                        backlog_head[li] := bk_next[v_node];
                        if backlog_head[li] = 0 then backlog_tail[li] := 0; end if;
                    end if;
                end loop;
                if v_left > 0 then
                    n_layers := n_layers + 1;
                    ly_qty[n_layers] := v_left; ly_cost[n_layers] := v_cost;
                    ly_src[n_layers] := in_src[k]; ly_recv[n_layers] := i; ly_next[n_layers] := 0;
                    if layer_tail[li] = 0 then layer_head[li] := n_layers;
                    else ly_next[layer_tail[li]] := n_layers; end if;
                    layer_tail[li] := n_layers;
                end if;
                last_cost[li] := v_cost;
            end loop;
            f_unit := case when v_mixed then {{ schema }}.valuation_divide(v_total, v_q) else v_first_cost end;
            f_reval := v_reval;
            f_change := v_total - v_reval;
            fifo_val[li] := fifo_val[li] + f_change;

            -- AVCO: weighted average; at or below zero the average becomes the inbound cost (rule 11)
            v_before_qty := loc_qty[li];
            v_before_val := avco_val[li];
            v_new_qty := v_before_qty + v_q;
            if v_before_qty > 0 then
                v_new_val := v_before_val + v_avco_cost;
                avco_avg[li] := {{ schema }}.valuation_divide(v_new_val, v_new_qty);
            else
                avco_avg[li] := v_avco_unit;
                v_new_val := v_new_qty * v_avco_unit;
            end if;
            avco_val[li] := v_new_val;
            a_unit := v_avco_unit;
            a_change := v_new_val - v_before_val;
            a_reval := v_avco_cost - a_change;
            if v_before_qty < 0 or a_reval <> 0 then
                {{ _emit_cost_line("1", "'avco'", "'revaluation'", "i", "i", "greatest(-v_before_qty, 0)", "v_avco_unit", "a_reval", "null") }}
            end if;
        end if;

        loc_qty[li] := loc_qty[li] + v_delta;
        if v_type = 'sale' then
            sale_cost_fifo[i] := f_unit;
            sale_cost_avco[i] := a_unit;
        end if;
        {{ _emit_movement() }}
    end loop;

    -- the FIFO layers still open, per location in consumption order
    for li in 1 .. coalesce(array_length(v_locs, 1), 0) loop
        v_node := layer_head[li];
        while v_node > 0 loop
            {{ _emit_open_layer() }}
            v_node := ly_next[v_node];
        end loop;
    end loop;
end;
$fn$;
{%- endmacro %}


{#- Emitting rows: assign the OUT columns of one entry kind, null the others, `return next` (far cheaper
    per row than `return query`). Cost lines are booked on movement `i`. -#}
{% macro _emit_cost_line(seq, method, kind, issue, source, quantity, unit_cost, amount, provisional) -%}
entry_kind := 'cost_line'; line_sequence := {{ seq }}; method := {{ method }}; cost_kind := {{ kind }};
                v_issue := {{ issue }}; v_source := {{ source }};
                issue_movement_id := p_movement_id[v_issue]; issue_event_id := p_event_id[v_issue];
                issue_location := p_location[v_issue]; issued_at := p_occurred_at[v_issue];
                issue_movement_type := p_movement_type[v_issue];
                source_movement_id := p_movement_id[v_source]; source_event_id := p_event_id[v_source];
                source_movement_type := p_movement_type[v_source];
                line_quantity_base := {{ quantity }};
                line_unit_cost_base := {{ unit_cost }}; line_cost_amount := {{ amount }};
                provisional_unit_cost_base := {{ provisional }};
                return next;
{%- endmacro %}

{% macro _emit_movement() -%}
entry_kind := 'movement'; line_sequence := null; method := null; cost_kind := null;
        issue_movement_id := null; issue_event_id := null; issue_location := null; issued_at := null;
        issue_movement_type := null; source_movement_id := null; source_event_id := null; source_movement_type := null;
        line_quantity_base := null; line_unit_cost_base := null; line_cost_amount := null;
        provisional_unit_cost_base := null;
        quantity_base := v_delta; counted_quantity_base := v_counted; balance_quantity := loc_qty[li];
        in_transit_quantity := tr_qty;
        fifo_unit_cost_applied := f_unit; fifo_stock_value_change := f_change; fifo_revaluation_amount := f_reval;
        fifo_balance_value := fifo_val[li]; fifo_in_transit_value := tr_fifo;
        avco_unit_cost_applied := a_unit; avco_stock_value_change := a_change; avco_revaluation_amount := a_reval;
        avco_balance_value := avco_val[li]; avco_average_unit_cost := avco_avg[li]; avco_in_transit_value := tr_avco;
        return next;
        -- cost lines of the next movement carry no movement columns
        quantity_base := null; counted_quantity_base := null; balance_quantity := null; in_transit_quantity := null;
        fifo_unit_cost_applied := null; fifo_stock_value_change := null; fifo_revaluation_amount := null;
        fifo_balance_value := null; fifo_in_transit_value := null;
        avco_unit_cost_applied := null; avco_stock_value_change := null; avco_revaluation_amount := null;
        avco_balance_value := null; avco_average_unit_cost := null; avco_in_transit_value := null;
{%- endmacro %}

{% macro _emit_open_layer() -%}
entry_kind := 'open_layer'; line_sequence := null; method := 'fifo'; cost_kind := null;
            -- the booking columns name the movement that brought the units to this location
            v_node_recv := ly_recv[v_node]; valuation_sequence := v_node_recv;
            movement_id := p_movement_id[v_node_recv]; source_name := p_source_name[v_node_recv];
            event_id := p_event_id[v_node_recv]; occurred_at := p_occurred_at[v_node_recv];
            movement_type := p_movement_type[v_node_recv]; location := v_locs[li];
            issue_movement_id := null; issue_event_id := null; issue_location := null; issued_at := null;
            issue_movement_type := null;
            source_movement_id := p_movement_id[ly_src[v_node]]; source_event_id := p_event_id[ly_src[v_node]];
            source_movement_type := p_movement_type[ly_src[v_node]]; line_quantity_base := ly_qty[v_node]; line_unit_cost_base := ly_cost[v_node];
            line_cost_amount := ly_qty[v_node] * ly_cost[v_node]; provisional_unit_cost_base := null;
            layer_sequence := v_node;
            return next;
{%- endmacro %}
