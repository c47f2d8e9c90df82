-- Flights with what is known at scheduled departure: the origin's latest weather observation
-- completed strictly before the scheduled departure (an as-of join on observation time, no
-- older than weather_max_age_minutes: a gap in the observations leaves the weather unknown,
-- not hours old), the plane and the airline, and how late the day landed. Outcomes (delays,
-- cancelled, diverted) ride along as labels. The as-of join yields one match per flight row.
{% set weather_columns = [
    'temp_f', 'dewpoint_f', 'humidity_pct', 'wind_dir_deg', 'wind_speed_mph',
    'wind_gust_mph', 'precip_in', 'pressure_mb', 'visibility_mi',
] %}
with flights_and_latest_weather as (
    select
        f.*,
        w.observed_at_utc,
        {% for column in weather_columns %}w.{{ column }},
        {% endfor %}f.sched_dep_utc - w.observed_at_utc
            <= to_minutes({{ var('weather_max_age_minutes') }}) as weather_is_current
    from {{ ref('stg_flights') }} as f
    asof left join {{ ref('stg_weather') }} as w
        on w.origin = f.origin and f.sched_dep_utc > w.observed_at_utc
)
select
    f.flight_id,
    f.day,
    f.carrier,
    a.airline_name,
    f.flight_number,
    f.tailnum,
    f.origin,
    f.dest,
    f.sched_dep_hhmm,
    f.sched_dep_hour,
    f.sched_dep_local,
    f.sched_dep_hour_utc,
    f.sched_arr_hhmm,
    f.distance_miles,
    case when f.weather_is_current then f.observed_at_utc end as weather_observed_at_utc,
    {% for column in weather_columns %}case when f.weather_is_current then f.{{ column }} end as {{ column }},
    {% endfor %}p.manufacture_year  as plane_manufacture_year,
    p.seats             as plane_seats,
    f.dep_delay_minutes,
    f.arr_delay_minutes,
    f.cancelled,
    f.diverted,
    l.landed_days_late
from flights_and_latest_weather as f
left join {{ ref('stg_planes') }} as p
    on p.tailnum = f.tailnum
left join {{ ref('stg_airlines') }} as a
    on a.carrier = f.carrier
left join {{ ref('stg_landings') }} as l
    on l.day = f.day
