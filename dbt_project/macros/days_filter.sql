{#- Data tests on day-keyed models test only the days a run covers.

    A test configured with `where: "__trainflow_days__"` (models/staging/schema.yml) reads
    the rows of the days between the vars `first_day` and `last_day` (ISO dates, given as
    `dbt build --vars '{"first_day": "2013-01-02", "last_day": "2013-01-04"}'`; the Dagster
    step sets them for a run over a partition range) and every row when they are not set.

    Why a placeholder: dbt renders a test's `where` config when it parses the project, where
    project macros are not available, so the config names `__trainflow_days__` and
    get_where_subquery below, which dbt calls when it compiles each test, replaces it (the
    workaround dbt's documentation of `where` gives under "Custom logic"). The parsed
    project, and so dbt_state's build key, does not change with the vars. -#}

{#- The rows of the tested days, as a condition on the date column `column`, or '' when no
    days are set (every row). The column is a `date` in every model that uses it and the
    bounds are date literals, so the comparison is between dates in DuckDB and PostgreSQL
    alike. Rows without a day belong to no partition: every run tests them, so a not_null
    test of the day column still finds them. -#}
{% macro trainflow_days_filter(column='day') -%}
    {%- set first_day = var('first_day', none) -%}
    {%- set last_day = var('last_day', none) -%}
    {%- if first_day is none and last_day is none -%}
        {{- return('') -}}
    {%- endif -%}
    {%- if first_day is none or last_day is none -%}
        {{- exceptions.raise_compiler_error(
            'set both vars first_day and last_day (ISO dates), or neither') -}}
    {%- endif -%}
    {%- set first = trainflow_iso_date(first_day) -%}
    {%- set last = trainflow_iso_date(last_day) -%}
    {%- if last < first -%}
        {{- exceptions.raise_compiler_error(
            'var last_day ' ~ last ~ ' is before first_day ' ~ first) -}}
    {%- endif -%}
    ({{ column }} is null or {{ column }} between cast('{{ first }}' as date) and cast('{{ last }}' as date))
{%- endmacro %}

{#- A var as an ISO date (YYYY-MM-DD): parsed, so nothing but a date reaches the SQL. -#}
{% macro trainflow_iso_date(value) -%}
    {{- return(modules.datetime.date.fromisoformat(value | string).isoformat()) -}}
{%- endmacro %}

{#- dbt's own get_where_subquery (a test reads `(select * from <model> where <where>)`
    instead of the model when its `where` config is set), except that a `where` of exactly
    `__trainflow_days__` becomes trainflow_days_filter(): with no days set, the test reads
    the whole model, as without the config. Defined in the root project, it takes the place
    of dbt's macro of the same name for this project's tests. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == '__trainflow_days__' -%}
        {%- set where = trainflow_days_filter() | trim -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
