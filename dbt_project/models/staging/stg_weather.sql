-- One row per origin and UTC hour (the shipped table repeats a few hours). The row of hour H
-- holds observations up to minute 51 of H (precipitation is accumulated until :51), so it is
-- known from H:51 on: observed_at_utc, the time the flights model joins on.
select
    upper(trim(origin))                                 as origin,
    cast(time_hour as timestamptz) at time zone 'UTC'   as hour_utc,
    (cast(time_hour as timestamptz) at time zone 'UTC')
        + to_minutes({{ var('weather_observed_minute') }})       as observed_at_utc,
    cast(temp as double)                                as temp_f,
    cast(dewp as double)                                as dewpoint_f,
    cast(humid as double)                               as humidity_pct,
    cast(wind_dir as double)                            as wind_dir_deg,
    cast(wind_speed as double)                          as wind_speed_mph,
    cast(wind_gust as double)                           as wind_gust_mph,
    cast(precip as double)                              as precip_in,
    cast(pressure as double)                            as pressure_mb,
    cast(visib as double)                               as visibility_mi
from {{ source('raw', 'weather') }}
qualify row_number() over (partition by origin, time_hour order by year, month, day, hour) = 1
