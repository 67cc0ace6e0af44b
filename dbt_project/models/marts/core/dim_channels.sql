with listings as (
    select distinct channel from {{ ref('stg_file__listings') }}
),

policies as (
    select * from {{ ref('stg_file__policies') }}
),

channels as (
    select channel from listings
    union
    select channel from policies
),

final as (
    select
        channels.channel,
        coalesce(policies.safety_buffer, 0) as safety_buffer,
        coalesce(policies.percentage, 100) as publish_percentage,
        policies.maximum as publish_maximum,
        policies.minimum as publish_minimum,
        coalesce(policies.conflict_rule, 'master_wins') as conflict_rule,
        coalesce(policies.in_flight_seconds, {{ var('in_flight_seconds', 900) }}) as in_flight_seconds,
        policies.channel is not null as has_policy
    from channels
    left join policies on policies.channel = channels.channel
)

select * from final
