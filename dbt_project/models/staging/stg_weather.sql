-- One row per origin and UTC hour (the shipped table repeats a few hours). The row of hour H
-- holds observations up to minute 51 of H (precipitation is accumulated until :51), so it is
-- known from H:51 on: observed_at_utc, the time the flights model joins on. Safe casts: a
-- value that cannot be cast is null and named in cast_failures (macros/safe_cast.sql).
{% set casts = [
    ('hour_utc', 'time_hour', 'timestamptz'),
    ('temp_f', 'temp', 'double precision'),
    ('dewpoint_f', 'dewp', 'double precision'),
    ('humidity_pct', 'humid', 'double precision'),
    ('wind_dir_deg', 'wind_dir', 'double precision'),
    ('wind_speed_mph', 'wind_speed', 'double precision'),
    ('wind_gust_mph', 'wind_gust', 'double precision'),
    ('precip_in', 'precip', 'double precision'),
    ('pressure_mb', 'pressure', 'double precision'),
    ('visibility_mi', 'visib', 'double precision'),
] %}
select
    origin, hour_utc, observed_at_utc, temp_f, dewpoint_f, humidity_pct, wind_dir_deg,
    wind_speed_mph, wind_gust_mph, precip_in, pressure_mb, visibility_mi, cast_failures
from (
    select
        upper(trim(origin))                                 as origin,
        {{ safe_cast('time_hour', 'timestamptz') }} at time zone 'UTC'
                                                            as hour_utc,
        ({{ safe_cast('time_hour', 'timestamptz') }} at time zone 'UTC')
            + {{ minutes(var('weather_observed_minute')) }} as observed_at_utc,
    {%- for column, raw, type in casts[1:] %}
        {{ safe_cast(raw, type) }} as {{ column }},
    {%- endfor %}
        {{ cast_failures(casts) }}                          as cast_failures,
        row_number() over (partition by origin, time_hour order by year, month, day, hour)
                                                            as repeat_number
    from {{ source('raw', 'weather') }}
) as hourly
where repeat_number = 1
