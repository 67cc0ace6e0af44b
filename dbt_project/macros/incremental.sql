{#- The mark of a model that follows another one incrementally (the valuation marts follow the valuation, the ledger's
    models each other): the latest `column` stamp among its own rows, and whether it must be filled whole instead of
    caught up: no mark (empty, or a table from before the column), or the relation it follows rebuilt whole since
    (its oldest `column` stamp later than the mark). Returns [mark as text, whole]. Rendered in a pre_hook,
    after the hook that locks both relations, so the answer holds for the model's statement. -#}
{% macro incremental_mark(column, followed) -%}
    {%- set mark, whole = none, true -%}
    {%- if execute and column in (adapter.get_columns_in_relation(this) | map(attribute='name') | list) -%}
        {%- set found = run_query(
            "select mark::text, mark is null or oldest is null or oldest > mark from (select"
            ~ " (select max(" ~ column ~ ") from " ~ this ~ ") as mark,"
            ~ " (select min(" ~ column ~ ") from " ~ followed ~ ") as oldest) as marks"
        ).rows[0] -%}
        {%- set mark, whole = found[0], found[1] -%}
    {%- endif -%}
    {{ return([mark, whole]) }}
{%- endmacro %}



{#- pre_hook of a model that follows another one incrementally: lock it against a concurrent build of itself and the
    relation it follows against a writer, so that what its later hooks decide (rendered each just before it runs)
    is what the model's statement reads. -#}
{% macro incremental_lock(followed) -%}
    {%- if is_incremental() -%}
    lock table {{ this }} in share row exclusive mode;
    lock table {{ followed }} in share mode
    {%- endif -%}
{%- endmacro %}


{#- The filter (after `where`) on the rows of `rel` a model built incrementally reads: all of them when it is
    built whole, else those whose `column` is later than the mark its catch-up hook left in `setting`. -#}
{% macro incremental_after(rel, column, setting) -%}
    {%- if is_incremental() -%}
    {{ rel }}.{{ column }} > current_setting({{ setting }})::timestamptz
    {%- else -%}
    true
    {%- endif -%}
{%- endmacro %}
