-- Flights with what is known at scheduled departure: the origin's weather in the scheduled
-- hour, the plane and the airline, and how late the day landed. Outcomes (delays, cancelled,
-- diverted) ride along as labels.
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
    w.temp_f,
    w.dewpoint_f,
    w.humidity_pct,
    w.wind_dir_deg,
    w.wind_speed_mph,
    w.wind_gust_mph,
    w.precip_in,
    w.pressure_mb,
    w.visibility_mi,
    p.manufacture_year  as plane_manufacture_year,
    p.seats             as plane_seats,
    f.dep_delay_minutes,
    f.arr_delay_minutes,
    f.cancelled,
    f.diverted,
    l.landed_days_late
from {{ ref('stg_flights') }} as f
left join {{ ref('stg_weather') }} as w
    on w.origin = f.origin and w.hour_utc = f.sched_dep_hour_utc
left join {{ ref('stg_planes') }} as p
    on p.tailnum = f.tailnum
left join {{ ref('stg_airlines') }} as a
    on a.carrier = f.carrier
left join {{ ref('stg_landings') }} as l
    on l.day = f.day
