{#- Every row's value is one of `values`; a null fails too. One scan, where not_null and accepted_values
    would take one each (on int_valuation_entries_posted, gigabytes at 10M movements). Returns each value
    that is not allowed, with its rows. -#}
{% test one_of(model, column_name, values) %}
    select {{ column_name }} as value_field, count(*) as n_records
    from {{ model }}
    where {{ column_name }} is null
        or {{ column_name }} not in ({% for value in values %}'{{ value }}'{{ ', ' if not loop.last }}{% endfor %})
    group by {{ column_name }}
{% endtest %}
