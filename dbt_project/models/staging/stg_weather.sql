-- One row per origin and UTC hour (the shipped table repeats a few hours). The row of hour H
-- holds observations up to minute 51 of H (precipitation is accumulated until :51), so it is
-- known from H:51 on: observed_at_utc, the time the flights model joins on.
select
    origin, hour_utc, observed_at_utc, temp_f, dewpoint_f, humidity_pct, wind_dir_deg,
    wind_speed_mph, wind_gust_mph, precip_in, pressure_mb, visibility_mi
from (
    select
        upper(trim(origin))                                 as origin,
        cast(time_hour as timestamptz) at time zone 'UTC'   as hour_utc,
        (cast(time_hour as timestamptz) at time zone 'UTC')
            + {{ minutes(var('weather_observed_minute')) }} as observed_at_utc,
        cast(temp as double precision)                      as temp_f,
        cast(dewp as double precision)                      as dewpoint_f,
        cast(humid as double precision)                     as humidity_pct,
        cast(wind_dir as double precision)                  as wind_dir_deg,
        cast(wind_speed as double precision)                as wind_speed_mph,
        cast(wind_gust as double precision)                 as wind_gust_mph,
        cast(precip as double precision)                    as precip_in,
        cast(pressure as double precision)                  as pressure_mb,
        cast(visib as double precision)                     as visibility_mi,
        row_number() over (partition by origin, time_hour order by year, month, day, hour)
                                                            as repeat_number
    from {{ source('raw', 'weather') }}
) as hourly
where repeat_number = 1
