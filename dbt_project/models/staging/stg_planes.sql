-- Safe casts: a value that cannot be cast is null and named in cast_failures
-- (macros/safe_cast.sql).
{% set casts = [
    ('manufacture_year', 'year', 'integer'),
    ('seats', 'seats', 'integer'),
    ('engines', 'engines', 'integer'),
] %}
select
    upper(trim(tailnum))        as tailnum,
{%- for column, raw, type in casts %}
    {{ safe_cast(raw, type) }} as {{ column }},
{%- endfor %}
    type                        as plane_type,
    {{ cast_failures(casts) }}  as cast_failures
from {{ source('raw', 'planes') }}
