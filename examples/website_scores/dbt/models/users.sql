{{ config(location=day_file('users')) }}
-- The day's users as the app knew them, one row per user, without the e-mail address (the
-- reporting side has no use for it).
select
    user_id,
    country,
    plan,
    signup_date
from {{ source('app', 'users') }}
where load_day = cast('{{ var("partition") }}' as date)
