-- Typed flights. dep_time / sched_dep_time are local HHMM integers; time_hour is UTC text.
select
    cast(source_row as bigint)                                  as flight_id,
    cast(flight_date as date)                                   as day,
    upper(trim(carrier))                                        as carrier,
    cast(flight as integer)                                     as flight_number,
    nullif(upper(trim(tailnum)), '')                            as tailnum,
    upper(trim(origin))                                         as origin,
    upper(trim(dest))                                           as dest,
    cast(sched_dep_time as integer)                             as sched_dep_hhmm,
    cast({{ int_div('sched_dep_time', 100) }} as integer)       as sched_dep_hour,
    cast(flight_date as timestamp)
        + {{ minutes(int_div('sched_dep_time', 100) ~ ' * 60 + sched_dep_time % 100') }}
                                                                as sched_dep_local,
    cast(sched_arr_time as integer)                             as sched_arr_hhmm,
    cast(distance as double precision)                          as distance_miles,
    cast(dep_delay as double precision)                         as dep_delay_minutes,
    cast(arr_delay as double precision)                         as arr_delay_minutes,
    dep_time is null                                            as cancelled,
    dep_time is not null and arr_delay is null                  as diverted,
    cast(time_hour as timestamptz) at time zone 'UTC'           as sched_dep_hour_utc,
    -- New York's offset from UTC is whole hours, so the local minute is the UTC minute.
    (cast(time_hour as timestamptz) at time zone 'UTC')
        + {{ minutes('sched_dep_time % 100') }}                 as sched_dep_utc
from {{ source('raw', 'flights') }}
