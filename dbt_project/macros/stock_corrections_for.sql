{#-
  The corrections one channel needs (DESIGN §8), from the drift mart. Only channels that publish a
  location's stock get corrections: a master of record is the truth for its own location. `lag` drift
  is explained by events in flight and is left alone; `uom` drift and `unexplained` drift above the
  review threshold (or any drift under a `manual` conflict rule) wait for a person. Under
  `last_write_wins` an edit made in the channel itself stands.
  `correction_id` is deterministic: the same drift seen again (same channel figure, same snapshot,
  same target) is the same correction, so planning twice never pushes twice.
-#}
{% macro stock_corrections_for(channel) %}
with drift as (
    select * from {{ ref('fct_channel_drift') }}
    where channel = '{{ channel }}'
),

channels as (
    select * from {{ ref('dim_channels') }}
),

candidates as (
    select
        drift.*,
        coalesce(channels.conflict_rule, 'master_wins') as conflict_rule
    from drift
    left join channels on channels.channel = drift.channel
    where drift.channel_role = 'publishing'
        and drift.drift_class in ('missed_event', 'unexplained', 'uom')
),

final as (
    select
        md5(concat_ws('|', channel, channel_sku, channel_location, channel_quantity::text,
                      expected_quantity::text, snapshot_at::text)) as correction_id,
        channel,
        sku,
        location,
        channel_sku,
        channel_location,
        channel_quantity as from_quantity,
        expected_quantity as to_quantity,
        drift_quantity,
        drift_class,
        snapshot_at,
        conflict_rule,
        (
            drift_class = 'uom'
            or conflict_rule = 'manual'
            or (drift_class = 'unexplained' and abs(drift_quantity) > {{ var('review_threshold_quantity', 5) }})
        ) as needs_review
    from candidates
    where not (conflict_rule = 'last_write_wins' and drift_class = 'unexplained')
)

select * from final
{% endmacro %}
