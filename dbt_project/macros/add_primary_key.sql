{#- post_hook of a large mart: its primary key, added once the table is written. Declared in the contract it
    would be kept up row by row while millions of rows are inserted; added after, it is one sorted build of the
    index (fct_stock_movements at 1M: 2.75 -> 2.1 s; fct_cost_of_goods at 10M: a 9 s build where the
    `unique` data test took 26 s alone, 83 s beside the rest of a build). Unnamed, so PostgreSQL picks a name
    that never collides with the index of the table the build replaces. -#}
{% macro add_primary_key(columns) -%}
    alter table {{ this }} add primary key ({{ columns | join(', ') }})
{%- endmacro %}
