{#- The contract check's empty schema, without dbt's generic warning about `numeric` without precision:
    in PostgreSQL an unconstrained numeric is exact and never rounds (DESIGN §7 wants exactly that for
    quantities and unit costs), so the warning is noise here. Otherwise the same as dbt's default. -#}
{% macro postgres__get_empty_schema_sql(columns) %}
    select
    {% for i in columns %}
      {%- set col = columns[i] -%}
      {%- if col['data_type'] is not defined -%}
        {{ exceptions.column_type_missing(column_names=[col['name']]) }}
      {%- endif -%}
      {% set col_name = adapter.quote(col['name']) if col.get('quote') else col['name'] %}
      {{ cast('null', col['data_type']) }} as {{ col_name }}{{ ", " if not loop.last }}
    {%- endfor -%}
{% endmacro %}
