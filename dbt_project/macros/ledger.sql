{#-
    The ledger built incrementally (var ledger_incremental; dbt-postgres builds increments through a temporary
    table, which needs the TEMPORARY privilege): a build maps, converts and de-duplicates only what was loaded
    since the last one, instead of the whole raw history (issue 4: at 10M movements the three steps took ~75 s
    of every build).

    What was loaded: the triggers orchestration.lib.raw puts on every raw table log each statement in
    ops.pending_loads, in the loader's transaction (visible exactly when its rows are): new rows of an append-only
    table per batch_id; any other change (reference data, a row updated or deleted, a truncate) with batch_id null.

    int_movements_mapped (ledger_take_loads, its pre_hook) deletes the entries it takes, in its own transaction,
    and reads the rows of those batches that it does not have yet (by source_name and event_id: a batch read twice,
    say one whose rows were committed by two statements, adds nothing twice). A change that is not new rows, no
    mapped_at column (a table from an earlier release), or a full refresh: the ledger is mapped whole. Every row
    carries `mapped_at`, its build's stamp (later than every stamp already in the table).

    int_movements_deduplicated (ledger_dedup_catch_up) follows the mapped rows stamped after its latest: it ranks
    again every group of reports (ledger_duplicate_key) that one of them joins, and keeps every other row as it is.
    With no mark, or a mapped table filled whole since (its oldest stamp later than the mark), it is filled whole.
    Its rows carry `ledgered_at`, the stamp of the build that (re)wrote them: what fct_stock_movements (below),
    int_stock_balances_running (macros/positions.sql) and the valuation's change check follow.
    Tested equal to a full refresh (tests/valuation/test_ledger_incremental.py).
-#}

{% macro ledger_setting(name) -%}
    'inventory_sync.ledger_{{ name }}'
{%- endmacro %}


{#- The config of a ledger model: incremental with var ledger_incremental, else a table. -#}
{% macro ledger_config(pre_hook=[], post_hook=[]) -%}
    {{ return({
        'materialized': 'incremental' if var('ledger_incremental', false) else 'table',
        'incremental_strategy': 'append',
        'on_schema_change': 'append_new_columns',
        'pre_hook': pre_hook,
        'post_hook': post_hook,
    }) }}
{%- endmacro %}


{#- What makes two reports one physical event (with sku, location, movement_type and quantity_base; see
    int_movements_deduplicated). `rel`: the relation's name or alias, empty inside an index definition. -#}
{% macro ledger_duplicate_key(rel='') -%}
    {%- set p = (rel ~ '.') if rel else '' -%}
    coalesce({{ p }}reference, {{ p }}source_name || ':' || {{ p }}event_id)
{%- endmacro %}


{#- pre_hooks of int_movements_mapped: lock out a concurrent build, take the pending loads and (when they call for
    it) empty the table to map it whole. Settings carry the outcome to the model's statement, in the same
    transaction. -#}
{% macro ledger_take_loads() -%}
    {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) if execute else none -%}
    {%- set incremental = is_incremental() and existing is not none
        and 'mapped_at' in (adapter.get_columns_in_relation(existing) | map(attribute='name') | list) -%}
    {%- if is_incremental() %}
    lock table {{ this }} in share row exclusive mode;
    {%- endif %}
    with taken as (
        delete from ops.pending_loads returning batch_id
    )
    select
        set_config({{ ledger_setting('whole') }}, ({{ 'true' if not incremental else 'coalesce(bool_or(batch_id is null), false)' }})::text, true),
        set_config(
            {{ ledger_setting('batches') }},
            coalesce(array_agg(distinct batch_id) filter (where batch_id is not null), '{}')::text,
            true
        )
    from taken;
    {%- if is_incremental() %}
    do $whole$
    begin
        if current_setting({{ ledger_setting('whole') }})::boolean then
            truncate {{ this }};
        end if;
    end
    $whole$
    {%- endif %}
{%- endmacro %}


{#- pre_hook: this build's stamp for `column` (a ledger model's rows carry the stamp of the build that wrote them):
    now, but always later than every stamp already in the relation (after its lock), so that the marks of the models
    that follow it only grow, even if the clock is set back. -#}
{% macro ledger_begin_stamp(column) -%}
    {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) if execute else none -%}
    {%- set stamped = existing is not none
        and column in (adapter.get_columns_in_relation(existing) | map(attribute='name') | list) -%}
    select set_config(
        {{ ledger_setting(column) }},
        {%- if stamped %}
        greatest(now(), (select max({{ column }}) from {{ this }}) + interval '1 microsecond')::text,
        {%- else %}
        now()::text,
        {%- endif %}
        true
    )
{%- endmacro %}


{#- The stamp ledger_begin_stamp fixed (outside a build, e.g. in a dbt unit test: now). -#}
{% macro ledger_stamp(column) -%}
    coalesce(nullif(current_setting({{ ledger_setting(column) }}, true), '')::timestamptz, now())
{%- endmacro %}


{#- Conditions for the model's statement: the whole ledger, or the rows of the batches taken. Pseudo-constant
    (no column), so PostgreSQL decides once per statement which branch runs. -#}
{% macro ledger_whole() -%}
    current_setting({{ ledger_setting('whole') }})::boolean
{%- endmacro %}

{% macro ledger_batches() -%}
    current_setting({{ ledger_setting('batches') }})::text[]
{%- endmacro %}



{#- pre_hook of int_movements_deduplicated built incrementally, after incremental_lock: delete every group a row
    mapped since the mark joins, and leave the mark for the model (ledger_deduplicated_after). -#}
{% macro ledger_dedup_catch_up() -%}
    {%- if is_incremental() -%}
    {%- set mapped = ref('int_movements_mapped') -%}
    {%- set mark, whole = incremental_mark('mapped_at', mapped) -%}
    {%- if whole -%}
    truncate {{ this }};
    select set_config({{ ledger_setting('deduplicated_after') }}, '-infinity', true)
    {%- else -%}
    {#- Per group changed, through the indexes on the key (the planner, with no statistics on tables just written and
        a default guess for the rows mapped since the mark, would hash them and read the whole of both). -#}
    set local enable_hashjoin = off;
    set local enable_mergejoin = off;
    delete from {{ this }} as deduplicated
    using ({{ ledger_changed_groups(mapped, "'" ~ mark ~ "'::timestamptz") }}) as changed
    where (deduplicated.sku, deduplicated.location, deduplicated.movement_type, {{ ledger_duplicate_key('deduplicated') }})
        = (changed.sku, changed.location, changed.movement_type, changed.duplicate_key);
    select set_config({{ ledger_setting('deduplicated_after') }}, '{{ mark }}', true)
    {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- The groups of reports that rows mapped after `after` join (quarantined rows join none). -#}
{% macro ledger_changed_groups(mapped, after) -%}
    select distinct sku, location, movement_type, {{ ledger_duplicate_key() }} as duplicate_key
    from {{ mapped }}
    where mapped_at > {{ after }} and quarantine_reason is null
{%- endmacro %}


{#- The mark the catch-up left: '-infinity' when the table is filled whole. -#}
{% macro ledger_deduplicated_after() -%}
    current_setting({{ ledger_setting('deduplicated_after') }})::timestamptz
{%- endmacro %}


{#- pre_hook of fct_stock_movements built incrementally (var ledger_incremental), after incremental_lock: delete the
    movements the ledger wrote again since the mart's mark (`ledgered_at`: a group of reports ranked again, whose
    winner may have changed) and leave the mark for the model, which inserts the ledger's rows written since
    (ledger_mart_increment). With no mark, or a ledger filled whole since, the mart is emptied and filled again. -#}
{% macro ledger_mart_catch_up() -%}
    {%- if is_incremental() -%}
    {%- set ledger = ref('int_movements_deduplicated') -%}
    {%- set mark, whole = incremental_mark('ledgered_at', ledger) -%}
    {%- if whole -%}
    truncate {{ this }};
    select set_config({{ ledger_setting('ledgered_after') }}, '-infinity', true)
    {%- else -%}
    {#- Per movement, through the mart's primary key (no statistics on a table just written: see above). -#}
    set local enable_hashjoin = off;
    set local enable_mergejoin = off;
    delete from {{ this }} as mart
    using {{ ledger }} as ledger
    where ledger.ledgered_at > '{{ mark }}'::timestamptz
        and mart.movement_id = ledger.source_name || ':' || ledger.event_id;
    set local enable_hashjoin = default;
    set local enable_mergejoin = default;
    select set_config({{ ledger_setting('ledgered_after') }}, '{{ mark }}', true)
    {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- The filter on the ledger rows a mart built incrementally reads (after `where`): all when it is filled whole, else
    those written since the mark. -#}
{% macro ledger_mart_increment(ledger) -%}
    {{ incremental_after(ledger, 'ledgered_at', ledger_setting('ledgered_after')) }}
{%- endmacro %}
