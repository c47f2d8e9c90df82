-- How late each day landed: days between the newest day already landed and this one, at
-- its latest landing (0 when it was the newest, or landed with the later days).
select
    day,
    cast(greatest(coalesce(newest_day_before - day, 0), 0) as integer) as landed_days_late
from (
    select
        day,
        newest_day_before,
        row_number() over (partition by day order by batch desc) as recency
    from {{ source('raw', 'landings') }}
) as landings
where recency = 1
