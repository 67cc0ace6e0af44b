{#- post_hook of a large mart: its primary key, added once the table is written. Declared in the contract it
    would be kept up row by row while millions of rows are inserted; added after, it is one sorted build of the
    index (fct_stock_movements at 1M: 2.75 -> 2.1 s; fct_cost_of_goods at 10M: a 9 s build where the
    `unique` data test took 26 s alone, 83 s beside the rest of a build). An incremental model's table keeps
    its key from the build that created it: then this only looks the key up, and replaces one on other columns
    (a table from an earlier release). Unnamed, so PostgreSQL picks a name that never collides with the index
    of the table the build replaces. -#}
{% macro add_primary_key(columns) -%}
do $key$
declare
    v_name text;
    v_definition text;
begin
    select conname, pg_get_constraintdef(oid) into v_name, v_definition
    from pg_constraint
    where conrelid = '{{ this }}'::regclass and contype = 'p';
    if v_definition is distinct from 'PRIMARY KEY ({{ columns | join(', ') }})' then
        if v_name is not null then
            execute format('alter table {{ this }} drop constraint %I', v_name);
        end if;
        alter table {{ this }} add primary key ({{ columns | join(', ') }});
    end if;
end
$key$
{%- endmacro %}


{#- post_hook: an index on `columns` (of the rows matching `where`, a partial index), created unless this relation
    has one already: dbt's `indexes` config cannot declare a partial index, and creates indexes only with the
    table (a table from an earlier release, kept by incremental builds, would never get one). A full build
    makes a new table, and the one it replaces keeps its own indexes until dropped, so the test is on this
    relation's indexes; unnamed, so PostgreSQL picks a name that never collides with theirs. An index on an
    expression, which PostgreSQL writes back in its own form, is found by `match` (a LIKE pattern on its
    definition) instead. -#}
{% macro index_once(columns, where=none, match=none) -%}
do $index$
begin
    if not exists (
        select 1 from pg_index
        where indrelid = '{{ this }}'::regclass
            and pg_get_indexdef(indexrelid) like {% if match %}$match${{ match }}$match${% else %}'%({{ columns | join(', ') }}){{ ' WHERE %' if where }}'{% endif %}
    ) then
        create index on {{ this }} ({{ columns | join(', ') }}){% if where %} where {{ where }}{% endif %};
    end if;
end
$index$
{%- endmacro %}


{#- post_hook: a CHECK constraint on this relation, added unless it has one whose definition (written back by
    PostgreSQL in its own form) matches `match`, a LIKE pattern. Every row is checked as it is written, where a
    data test would read the whole table in every build (int_valuation_entries_posted: gigabytes at 10M
    movements, between the valuation and the marts waiting for its tests). Added to a table already filled,
    it checks its rows once. -#}
{% macro check_once(expression, match) -%}
do $check$
begin
    if not exists (
        select 1 from pg_constraint
        where conrelid = '{{ this }}'::regclass and contype = 'c' and pg_get_constraintdef(oid) like $match${{ match }}$match$
    ) then
        alter table {{ this }} add check ({{ expression }});
    end if;
end
$check$
{%- endmacro %}
