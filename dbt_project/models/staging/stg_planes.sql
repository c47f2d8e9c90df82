select
    upper(trim(tailnum))        as tailnum,
    cast(year as integer)       as manufacture_year,
    cast(seats as integer)      as seats,
    cast(engines as integer)    as engines,
    type                        as plane_type
from {{ source('raw', 'planes') }}
