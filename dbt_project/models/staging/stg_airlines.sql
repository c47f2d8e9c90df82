select
    upper(trim(carrier))    as carrier,
    name                    as airline_name
from {{ source('raw', 'airlines') }}
