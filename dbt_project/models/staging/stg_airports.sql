select
    upper(trim(faa))        as faa,
    name                    as airport_name,
    cast(lat as double precision)     as lat,
    cast(lon as double precision)     as lon,
    cast(alt as integer)    as altitude_ft,
    tzone                   as tz_name
from {{ source('raw', 'airports') }}
