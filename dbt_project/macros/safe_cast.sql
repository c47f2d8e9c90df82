{#- Casts that never fail a query: a value that cannot be cast becomes null, and the row
    records it, so the data contract can quarantine the row naming the column and the raw
    value instead of the warehouse failing the read with its own conversion error.

    safe_cast(expression, type): `type` is one of bigint, integer, double precision, date,
    timestamptz. Text is cast when it has the canonical form of the type (the patterns
    below), in both warehouses, so they agree on every text value: PostgreSQL 15 has
    neither try_cast nor pg_input_is_valid, and DuckDB's try_cast accepts spellings
    PostgreSQL refuses ('12.0' as an integer, '1_000', a date as a timestamp). Spellings
    outside the patterns (NaN, Infinity, integers of 10 or more digits) are cast failures. -#}
{% macro safe_cast(expression, type) -%}
    {{ return(adapter.dispatch('safe_cast', 'trainflow')(expression, type)) }}
{%- endmacro %}

{#- DuckDB: text goes through the pattern (then try_cast, in case DuckDB refuses a text the
    pattern allows: a cast failure there, never an error); a typed value through try_cast
    alone. typeof() is the column's type, decided once per query, so typed columns pay
    nothing for the pattern. -#}
{% macro duckdb__safe_cast(expression, type) -%}
    case when typeof({{ expression }}) <> 'VARCHAR' then try_cast({{ expression }} as {{ type }})
        when regexp_full_match(cast({{ expression }} as varchar), '{{ trainflow_cast_pattern(type) }}')
        then try_cast(cast({{ expression }} as varchar) as {{ type }}) end
{%- endmacro %}

{% macro default__safe_cast(expression, type) -%}
    case when cast({{ expression }} as text) ~ '{{ trainflow_cast_pattern(type) }}'
        then cast(cast({{ expression }} as text) as {{ type }}) end
{%- endmacro %}

{#- Text that always casts to `type` in PostgreSQL. Integers: at most 9 (18) digits, so they
    fit; doubles: at most 200 digits on either side of the point and a two-digit exponent,
    so they neither overflow nor underflow; dates: a day that exists in its month (February
    29 in leap years only); timestamps: such a date, a time, and Z or a UTC offset. -#}
{% macro trainflow_cast_pattern(type) -%}
    {%- set leap_year = '([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)' -%}
    {%- set date = '(' ~ '[1-9][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])'
        ~ '|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)'
        ~ '|' ~ leap_year ~ '-02-29)' -%}
    {%- set patterns = {
        'integer': '^\\s*[-+]?[0-9]{1,9}\\s*$',
        'bigint': '^\\s*[-+]?[0-9]{1,18}\\s*$',
        'double precision':
            '^\\s*[-+]?([0-9]{1,200}(\\.[0-9]{0,200})?|\\.[0-9]{1,200})([eE][-+]?[0-9]{1,2})?\\s*$',
        'date': '^' ~ date ~ '$',
        'timestamptz': '^' ~ date ~ '[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?'
            ~ '(Z|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)?$',
    } -%}
    {%- if type not in patterns -%}
        {{- exceptions.raise_compiler_error('safe_cast: no pattern for type ' ~ type) -}}
    {%- endif -%}
    {{- patterns[type] -}}
{%- endmacro %}

{#- The row's record of failed casts, for the data contract: null when every cast held,
    else a JSON object of contract column -> raw value as text, e.g.
    {"dep_delay_minutes":"12 min"}. `casts` is a list of (column, raw expression, type). -#}
{% macro cast_failures(casts) -%}
    nullif('{' || concat_ws(','
    {%- for column, raw, type in casts %},
        case when {{ raw }} is not null and {{ safe_cast(raw, type) }} is null
            then '"{{ column }}":' || cast(to_json(cast({{ raw }} as varchar)) as varchar) end
    {%- endfor %}
    ) || '}', '{}')
{%- endmacro %}
