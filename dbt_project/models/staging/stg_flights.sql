-- Typed flights. dep_time / sched_dep_time are local HHMM integers; time_hour is UTC text.
-- Every cast is a safe cast (macros/safe_cast.sql): a value that cannot be cast becomes null
-- and `cast_failures` records it (column and raw value), so the read never fails on it and
-- the data contract quarantines the row.
{% set casts = [
    ('flight_id', 'source_row', 'bigint'),
    ('day', 'flight_date', 'date'),
    ('flight_number', 'flight', 'integer'),
    ('sched_dep_hhmm', 'sched_dep_time', 'integer'),
    ('sched_arr_hhmm', 'sched_arr_time', 'integer'),
    ('distance_miles', 'distance', 'double precision'),
    ('dep_delay_minutes', 'dep_delay', 'double precision'),
    ('arr_delay_minutes', 'arr_delay', 'double precision'),
    ('sched_dep_hour_utc', 'time_hour', 'timestamptz'),
] %}
with typed as (
    select
    {%- for column, raw, type in casts %}
        {{ safe_cast(raw, type) }} as {{ column }},
    {%- endfor %}
        {{ cast_failures(casts) }} as cast_failures,
        carrier,
        tailnum,
        origin,
        dest,
        dep_time,
        arr_delay
    from {{ source('raw', 'flights') }}
)
select
    flight_id,
    day,
    upper(trim(carrier))                                        as carrier,
    flight_number,
    nullif(upper(trim(tailnum)), '')                            as tailnum,
    upper(trim(origin))                                         as origin,
    upper(trim(dest))                                           as dest,
    sched_dep_hhmm,
    cast({{ int_div('sched_dep_hhmm', 100) }} as integer)       as sched_dep_hour,
    cast(day as timestamp)
        + {{ minutes(int_div('sched_dep_hhmm', 100) ~ ' * 60 + sched_dep_hhmm % 100') }}
                                                                as sched_dep_local,
    sched_arr_hhmm,
    distance_miles,
    dep_delay_minutes,
    arr_delay_minutes,
    dep_time is null                                            as cancelled,
    -- The raw delay: a delay that could not be cast is a cast failure, not a diversion.
    dep_time is not null and arr_delay is null                  as diverted,
    sched_dep_hour_utc at time zone 'UTC'                       as sched_dep_hour_utc,
    -- New York's offset from UTC is whole hours, so the local minute is the UTC minute.
    (sched_dep_hour_utc at time zone 'UTC')
        + {{ minutes('sched_dep_hhmm % 100') }}                 as sched_dep_utc,
    cast_failures
from typed
