{{ config(location=day_file('events')) }}
-- The day's product events, one row per event id (a re-sent event counts once), in time order.
select
    event_id,
    user_id,
    event_type,
    event_time,
    session_id,
    amount
from {{ source('app', 'events') }}
where load_day = cast('{{ var("partition") }}' as date)
qualify row_number() over (partition by event_id order by event_time) = 1
order by event_time, event_id
