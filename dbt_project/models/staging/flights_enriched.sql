-- Flights with what is known at scheduled departure: the origin's latest weather observation
-- completed strictly before the scheduled departure and no older than weather_max_age_minutes
-- (a gap in the observations leaves the weather unknown, not hours old), the plane and the
-- airline, and how late the day landed. Outcomes (delays, cancelled, diverted) ride along as
-- labels. One row per flight.
--
-- The as-of lookup is an equi-join, not DuckDB's ASOF JOIN (PostgreSQL has none): weather is
-- hourly and known from minute weather_observed_minute of its hour, so only the departure
-- hour and the few hours before it (as many as the maximum age spans) can hold the latest
-- observation. Joining those candidate hours on (origin, hour) and keeping the newest one
-- that qualifies gives the same answer in both warehouses, with plain hash joins.
{% set weather_columns = [
    'temp_f', 'dewpoint_f', 'humidity_pct', 'wind_dir_deg', 'wind_speed_mph',
    'wind_gust_mph', 'precip_in', 'pressure_mb', 'visibility_mi',
] %}
{% set max_age = var('weather_max_age_minutes') | int %}
{% set hours_back = (max_age + var('weather_observed_minute') | int) // 60 %}
with latest_observation as (
    select
        f.flight_id,
        f.day,
        max(w.observed_at_utc) as observed_at_utc
    from {{ ref('stg_flights') }} as f
    cross join (
        values {% for hours in range(hours_back + 1) %}({{ hours }}){{ ", " if not loop.last }}{% endfor %}
    ) as back (hours)
    inner join {{ ref('stg_weather') }} as w
        on w.origin = f.origin
        and w.hour_utc = date_trunc('hour', f.sched_dep_utc) - interval '1 hour' * back.hours
    where w.observed_at_utc < f.sched_dep_utc
        and f.sched_dep_utc - w.observed_at_utc <= {{ minutes(max_age) }}
    group by f.flight_id, f.day
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
    w.observed_at_utc as weather_observed_at_utc,
    {% for column in weather_columns %}w.{{ column }},
    {% endfor %}p.manufacture_year  as plane_manufacture_year,
    p.seats             as plane_seats,
    f.dep_delay_minutes,
    f.arr_delay_minutes,
    f.cancelled,
    f.diverted,
    l.landed_days_late
from {{ ref('stg_flights') }} as f
left join latest_observation as lo
    on lo.flight_id = f.flight_id and lo.day = f.day
left join {{ ref('stg_weather') }} as w
    on w.origin = f.origin and w.observed_at_utc = lo.observed_at_utc
left join {{ ref('stg_planes') }} as p
    on p.tailnum = f.tailnum
left join {{ ref('stg_airlines') }} as a
    on a.carrier = f.carrier
left join {{ ref('stg_landings') }} as l
    on l.day = f.day
