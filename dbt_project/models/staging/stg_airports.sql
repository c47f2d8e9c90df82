-- Safe casts: a value that cannot be cast is null and named in cast_failures
-- (macros/safe_cast.sql).
{% set casts = [
    ('lat', 'lat', 'double precision'),
    ('lon', 'lon', 'double precision'),
    ('altitude_ft', 'alt', 'integer'),
] %}
select
    upper(trim(faa))            as faa,
    name                        as airport_name,
{%- for column, raw, type in casts %}
    {{ safe_cast(raw, type) }} as {{ column }},
{%- endfor %}
    tzone                       as tz_name,
    {{ cast_failures(casts) }}  as cast_failures
from {{ source('raw', 'airports') }}
