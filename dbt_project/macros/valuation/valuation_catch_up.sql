{#-
    The valuation marts (fct_inventory_valuation, fct_cost_of_goods, fct_cost_layers) follow
    int_valuation_entries_posted incrementally (var valuation_incremental) instead of being rebuilt from all
    its entries on every build (issue 4: at 10M movements ~160 s of an incremental build whose valuation
    rewrote a few percent of the entries).

    What changed: every entry carries `valued_at`, the stamp of the build that wrote it (valuation_begin_build:
    the build's time, always later than every stamp already in the table). An incremental build of the
    valuation rewrites, per SKU it re-values, a suffix of its positions (movement, cost_line and state entries
    from the resume position on) and all its open layers; a SKU that leaves the ledger leaves a tombstone (a
    `state` entry at position 0, valuation_delete_gone_skus). So, per SKU, the entries stamped after any
    moment are exactly a suffix of its positions and its open layers.

    Catching up (valuation_mart_catch_up, a mart's pre_hooks, in the mart's own transaction): the mart's mark is
    the latest stamp among its rows. Per SKU with movement or state entries stamped after the mark, the first
    such position (`resume_from`; 0 for a tombstone): the mart's rows of that SKU from there on (open layers:
    all of them) are deleted, and the model inserts the entries stamped after the mark. With no mark (an empty
    mart), or a valuation rebuilt whole since (its oldest stamp is later than the mark), the mart is emptied
    and filled again. A mark that lags (the last build wrote none of this mart's kind of entries) only makes
    it redo work: deleting from an earlier position and inserting the same entries again gives the same rows.
    Both relations are locked first (the mart against a concurrent build of itself, the valuation against a
    concurrent write), so what the hooks decide is what the model reads.
-#}

{#- The setting that carries a value from a hook to the model's statement in the same transaction. -#}
{% macro valuation_setting(name) -%}
    'inventory_sync.{{ name }}'
{%- endmacro %}


{#- pre_hook of int_valuation_entries_posted: lock out concurrent valuation builds and mart catch-ups, then fix
    this build's stamp (valued_at): now, but always later than every stamp already in the table, so that the
    marts' marks only grow even if the clock is set back. (A table from before valued_at gets the column here,
    its rows stamped now: the marts then fill themselves again, as after a rebuild.) -#}
{% macro valuation_begin_build() -%}
    {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) if execute else none -%}
    {%- if existing is not none -%}
    lock table {{ this }} in share row exclusive mode;
    {%- if 'valued_at' not in (adapter.get_columns_in_relation(existing) | map(attribute='name') | list) %}
    alter table {{ this }} add column valued_at timestamptz default now();
    alter table {{ this }} alter column valued_at drop default;
    {%- endif %}
    select set_config(
        {{ valuation_setting('valued_at') }},
        greatest(now(), (select max(valued_at) from {{ this }}) + interval '1 microsecond')::text,
        true
    );
    {%- if is_incremental() %}
    select set_config(
        {{ valuation_setting('ledger_after') }},
        {%- if 'ledger_read_through' in (adapter.get_columns_in_relation(existing) | map(attribute='name') | list) %}
        coalesce((select max(ledger_read_through) from {{ this }} where entry_kind = 'state'), '-infinity')::text,
        {%- else %}
        '-infinity',
        {%- endif %}
        true
    );
    {#- Whether the rows the ledger wrote since that mark are all that can differ (int_valuation_entries_posted's
        changes-only path): the ledger was not filled whole since (its oldest ledgered_at is not later than the
        mark; a ledger built incrementally keeps every row it does not write again, and every row a report
        demotes is written again: macros/ledger.sql). Else each candidate SKU's rows are fingerprinted. -#}
    select set_config(
        {{ valuation_setting('changes_only') }},
        coalesce(
            (select min(ledgered_at) from {{ ref('int_movements_deduplicated') }})
                <= current_setting({{ valuation_setting('ledger_after') }})::timestamptz,
            false
        )::text,
        true
    );
    {%- endif %}
    {%- else -%}
    select set_config({{ valuation_setting('valued_at') }}, now()::text, true);
    {%- endif %}
    {#- What the ledger holds as this build starts: the mark its checkpoints record (ledgered_at only grows, in
        the order the ledger's builds commit, so every row the build reads later is written at or before it, or
        written after it and checked again by the next build). -#}
    select set_config(
        {{ valuation_setting('ledger_through') }},
        coalesce((select max(ledgered_at) from {{ ref('int_movements_unified') }}), '-infinity')::text,
        true
    )
{%- endmacro %}


{#- An entry's ledger_read_through (state entries only; outside a build, e.g. in a dbt unit test: null). -#}
{% macro valuation_ledger_through() -%}
    case when entry_kind = 'state' then nullif(current_setting({{ valuation_setting('ledger_through') }}, true), '')::timestamptz end
{%- endmacro %}


{#- The stamp of this valuation build (outside a build, e.g. in a dbt unit test: now). Parallel safe. -#}
{% macro valuation_build_stamp() -%}
    coalesce(nullif(current_setting({{ valuation_setting('valued_at') }}, true), '')::timestamptz, now())
{%- endmacro %}


{#- pre_hook of a valuation mart built incrementally, after incremental_lock: delete what the entries stamped after the
    mark replace (`by_position`: per SKU from resume_from on, through the mart's primary key, which leads with
    sku and valuation_sequence; else all the SKU's rows) and leave the mark for
    the model (valuation_mart_increment). -#}
{% macro valuation_mart_catch_up(by_position=true) -%}
    {%- if is_incremental() -%}
    {%- set entries = ref('int_valuation_entries_posted') -%}
    {#- (a mart from before valued_at, built as a table: filled again, once the build has added the column) -#}
    {%- set mark, whole = incremental_mark('valued_at', entries) -%}
    {%- if whole -%}
    truncate {{ this }};
    select set_config({{ valuation_setting('valued_after') }}, '-infinity', true)
    {%- else -%}
    {#- Per SKU changed, through the primary key (sku, valuation_sequence, …): the planner, with no statistics on
        a mart just written and a default guess for the SKUs changed, would hash them and read the whole mart
        (10M movements: 6 s warm, 23 s in a build, against 1.1 s). -#}
    {%- if by_position %}
    set local enable_hashjoin = off;
    set local enable_mergejoin = off;
    {%- endif %}
    delete from {{ this }} as mart
    using (
        select entries.sku, min(entries.valuation_sequence) as resume_from
        from {{ entries }} as entries
        where entries.valued_at > '{{ mark }}'::timestamptz and entries.entry_kind in ('movement', 'state')
        group by entries.sku
    ) as changed
    where mart.sku = changed.sku{% if by_position %} and mart.valuation_sequence >= changed.resume_from{% endif %};
    {%- if by_position %}
    set local enable_hashjoin = default;
    set local enable_mergejoin = default;
    {%- endif %}
    select set_config({{ valuation_setting('valued_after') }}, '{{ mark }}', true)
    {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- The model's filter on the entries it reads (after `where`): all of them when built whole, else those
    stamped after the mark the pre_hook left (through the index on valued_at: the planner reads the setting
    when it estimates). -#}
{% macro valuation_mart_increment(entries) -%}
    {{ incremental_after(entries, 'valued_at', valuation_setting('valued_after')) }}
{%- endmacro %}


{#- The config of a valuation mart: incremental (catching up) with var valuation_incremental, else a table. -#}
{% macro valuation_mart_config(by_position=true, post_hook=[]) -%}
    {%- set incremental = var('valuation_incremental', false) -%}
    {{ return({
        'materialized': 'incremental' if incremental else 'table',
        'incremental_strategy': 'append',
        'on_schema_change': 'append_new_columns',
        'pre_hook': (["{{ incremental_lock(ref('int_valuation_entries_posted')) }}", "{{ valuation_mart_catch_up(by_position=" ~ by_position ~ ") }}"]
                     if incremental else []),
        'post_hook': post_hook + (["{{ index_once(['valued_at']) }}"] if incremental else []),
    }) }}
{%- endmacro %}
