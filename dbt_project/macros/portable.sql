{#- The few expressions DuckDB and PostgreSQL spell differently, dispatched on the target's
    adapter (dbt's adapter.dispatch), so every model stays one file for both warehouses. -#}

{#- Integer division of two integer expressions: DuckDB's `/` always returns a double. -#}
{% macro int_div(numerator, denominator) -%}
    {{ return(adapter.dispatch('int_div', 'trainflow')(numerator, denominator)) }}
{%- endmacro %}

{% macro duckdb__int_div(numerator, denominator) -%}
    ({{ numerator }} // {{ denominator }})
{%- endmacro %}

{% macro default__int_div(numerator, denominator) -%}
    ({{ numerator }} / {{ denominator }})
{%- endmacro %}

{#- `minutes` minutes as an interval, in both dialects. -#}
{% macro minutes(expression) -%}
    (interval '1 minute' * ({{ expression }}))
{%- endmacro %}
