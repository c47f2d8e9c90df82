-- How late each day landed: days between the newest day already landed and this one, at
-- its latest landing (0 when it was the newest, or landed with the later days); and how many
-- flight rows that landing wrote for the day (null where the landing log predates the
-- count), which the data contract reconciles with the rows a snapshot finds.
select
    day,
    cast(greatest(coalesce(newest_day_before - day, 0), 0) as integer) as landed_days_late,
    cast(flight_rows as bigint) as landed_rows
from (
    select
        day,
        newest_day_before,
        flight_rows,
        row_number() over (partition by day order by batch desc) as recency
    from {{ source('raw', 'landings') }}
) as landings
where recency = 1
