-- Flights with what is known at scheduled departure: the origin's latest weather observation
-- completed strictly before the scheduled departure and no older than weather_max_age_minutes
-- (a gap in the observations leaves the weather unknown, not hours old), the plane and the
-- airline, and how late the day landed and with how many rows. Outcomes (delays, cancelled,
-- diverted) ride along as labels, and the values staging could not cast (cast_failures).
-- One row per flight.
--
-- The as-of lookup is a few equi-joins, not DuckDB's ASOF JOIN (PostgreSQL has none):
-- weather is hourly and known from minute weather_observed_minute of its hour, so the newest
-- observation completed strictly before a departure at minute D belongs to the hour of
-- D - (weather_observed_minute + 1) minutes, or to one of the few hours before it (a gap in
-- the data) as long as it is not older than the maximum age. One left join per candidate
-- hour on (origin, hour) and the first candidate found gives the same answer in both
-- warehouses, with hash joins and the day filter of a reader pushed down to the flights.
{% set weather_columns = [
    'observed_at_utc', 'temp_f', 'dewpoint_f', 'humidity_pct', 'wind_dir_deg',
    'wind_speed_mph', 'wind_gust_mph', 'precip_in', 'pressure_mb', 'visibility_mi',
] %}
{% set max_age = var('weather_max_age_minutes') | int %}
{% set candidates = range(max_age // 60 + 1) %}
with flights as (
    select
        *,
        date_trunc(
            'hour', sched_dep_utc - {{ minutes(var('weather_observed_minute') | int + 1) }}
        ) as newest_weather_hour_utc
    from {{ ref('stg_flights') }}
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
{% for column in weather_columns %}
    case
        {% for k in candidates %}when w{{ k }}.origin is not null then w{{ k }}.{{ column }}
        {% endfor %}end as {{ 'weather_observed_at_utc' if column == 'observed_at_utc' else column }},
    {%- endfor %}
    p.manufacture_year  as plane_manufacture_year,
    p.seats             as plane_seats,
    f.dep_delay_minutes,
    f.arr_delay_minutes,
    f.cancelled,
    f.diverted,
    l.landed_days_late,
    l.landed_rows,
    f.cast_failures
from flights as f
{% for k in candidates %}left join {{ ref('stg_weather') }} as w{{ k }}
    on w{{ k }}.origin = f.origin
    and w{{ k }}.hour_utc = f.newest_weather_hour_utc - interval '1 hour' * {{ k }}
    and f.sched_dep_utc - w{{ k }}.observed_at_utc <= {{ minutes(max_age) }}
{% endfor %}left join {{ ref('stg_planes') }} as p
    on p.tailnum = f.tailnum
left join {{ ref('stg_airlines') }} as a
    on a.carrier = f.carrier
left join {{ ref('stg_landings') }} as l
    on l.day = f.day
