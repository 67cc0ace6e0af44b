-- What each channel shows against what it should show (DESIGN §8), per channel, SKU and location.
-- A channel that is the location's master of record should show the ledger's on-hand at its
-- snapshot time; any other channel should show the master's available stock under its policy (the
-- ledger's, less what the master itself no longer shows: see master_shortfall).
-- A master's change feed is read up to feed_read_to (its cursors' read_to, or where none has one the newest
-- event read from it). While that is older than the master's own snapshot of a SKU and location, the ledger
-- is known to be incomplete there: the master row is lag, and so is every publishing row of that SKU (a
-- kit: of any of its components) at that location, since no correction may be planned from it. A master
-- without a change feed (feed position null, e.g. Toast) holds no publishing row back.
with levels as (
    select * from {{ ref('int_channel_levels_latest') }}
    where not is_untracked_in_stock
),

locations as (
    select * from {{ ref('stg_file__locations') }}
),

channels as (
    select * from {{ ref('dim_channels') }}
),

positions as (
    select * from {{ ref('fct_stock_positions') }}
),

balances as (
    select * from {{ ref('int_stock_balances_running') }}
),

ledger as (
    select * from {{ ref('int_movements_unified') }}
),

kit_components as (
    select * from {{ ref('stg_file__kit_components') }}
),

pack_factors as (
    select * from {{ ref('int_uom_factors_resolved') }}
    where factor_to_base > 1
),

cursor_positions as (
    -- How far each channel's change feed is known to be completely read: the extraction's `read_to`
    -- (only ordered change-feed cursors carry it; level streams and cursors written before it existed do
    -- not). A quiet feed read a minute ago is read to a minute ago, however old its last event.
    select channel, max(cast(cursor_value ->> 'read_to' as timestamptz)) as read_to
    from {{ source('ops', 'extract_cursors') }}
    where cursor_value ->> 'read_to' is not null
    group by channel
),

feed_positions as (
    -- How far each channel's own change feed has been read into the ledger: its cursors' read_to; where
    -- no cursor has one, the newest event read from it (which makes a quiet feed look behind).
    select
        coalesce(c.channel, l.channel) as channel,
        coalesce(c.read_to, l.last_occurred_at) as feed_read_to
    from cursor_positions as c
    full outer join (
        select channel, max(occurred_at) as last_occurred_at from ledger group by channel
    ) as l on l.channel = c.channel
),

roles as (
    select
        levels.*,
        case when locations.master_channel = levels.channel then 'master' else 'publishing' end as channel_role
    from levels
    inner join locations on locations.location = levels.location
),

masters_behind as (
    -- Master rows whose change feed has not been read up to their own snapshot: the ledger is known to
    -- miss whatever moved that level since, so what it says this SKU should show here is incomplete. A
    -- master without a feed (feed position null, e.g. Toast) is never "behind" in this sense.
    select m.sku, m.location
    from roles as m
    inner join feed_positions as f on f.channel = m.channel
    where m.channel_role = 'master' and m.snapshot_at > f.feed_read_to
),

held_back as (
    -- SKUs and locations whose publishing rows wait for the master's feed: the SKU's own master row is
    -- behind, or (a kit) any component's.
    select sku, location from masters_behind
    union
    select k.kit_sku as sku, b.location
    from kit_components as k
    inner join masters_behind as b on b.sku = k.component_sku
),

master_balance as (
    -- The ledger's balance at each master snapshot: the last movement at or before it.
    select distinct on (roles.channel, roles.sku, roles.location)
        roles.channel, roles.sku, roles.location, b.balance_after
    from roles
    inner join balances as b
        on b.sku = roles.sku and b.location = roles.location and b.occurred_at <= roles.snapshot_at
    where roles.channel_role = 'master'
    order by roles.channel, roles.sku, roles.location, b.occurred_at desc, b.event_id collate "C" desc,
        b.source_name collate "C" desc
),

master_expected as (
    select
        roles.*,
        roles.on_hand_quantity as channel_quantity,
        coalesce(master_balance.balance_after, 0) as expected_quantity,
        cast(0 as numeric) as tolerance_quantity
    from roles
    left join master_balance
        on master_balance.channel = roles.channel
        and master_balance.sku = roles.sku
        and master_balance.location = roles.location
    where roles.channel_role = 'master'
),

master_shortfall as (
    -- Units the location's master of record no longer shows although the ledger still counts them: its
    -- level fell below the ledger's with no event in its feed (a master `missed_event`: the feed was read
    -- past its snapshot and the ratio is no pack factor). Publishing channels are not offered them
    -- (no phantom stock) until the event or a count reaches the ledger.
    select
        m.sku,
        m.location,
        m.expected_quantity - m.channel_quantity as shortfall_quantity,
        m.loaded_at as shortfall_learned_at
    from master_expected as m
    inner join feed_positions as f on f.channel = m.channel and f.feed_read_to >= m.snapshot_at
    where m.channel_quantity < m.expected_quantity
        and not exists (
            select 1
            from pack_factors as pf
            where pf.sku = m.sku
                and m.expected_quantity <> 0
                and (
                    m.channel_quantity = floor(m.expected_quantity / pf.factor_to_base)
                    or m.channel_quantity = m.expected_quantity * pf.factor_to_base
                )
        )
),

component_available as (
    -- A kit is offered what its scarcest component allows, less what the master no longer shows of it.
    select
        k.kit_sku,
        p.location,
        min(floor(greatest(p.available_quantity - coalesce(s.shortfall_quantity, 0), 0) / k.quantity_per_kit))
            as kit_available,
        count(*) as components_found
    from kit_components as k
    inner join positions as p on p.sku = k.component_sku
    left join master_shortfall as s on s.sku = k.component_sku and s.location = p.location
    group by k.kit_sku, p.location
),

kit_sizes as (
    select kit_sku, count(*) as components from kit_components group by kit_sku
),

publishing_available as (
    select
        roles.*,
        roles.available_quantity as channel_quantity,
        -- Units the channel sold that the master has not shipped yet are already off its figure.
        coalesce(
            case when kit_sizes.kit_sku is not null and component_available.components_found = kit_sizes.components
                then component_available.kit_available end,
            positions.available_quantity,
            0
        ) - coalesce(master_shortfall.shortfall_quantity, 0) - coalesce(roles.committed_quantity, 0) as master_available,
        -- Channels that show no commitments may be behind by sales still in flight.
        case when roles.committed_quantity is null then coalesce(channels.safety_buffer, 0) else 0 end
            as tolerance_quantity,
        channels.in_flight_seconds
    from roles
    left join positions on positions.sku = roles.sku and positions.location = roles.location
    left join master_shortfall on master_shortfall.sku = roles.sku and master_shortfall.location = roles.location
    left join kit_sizes on kit_sizes.kit_sku = roles.sku
    left join component_available
        on component_available.kit_sku = roles.sku and component_available.location = roles.location
    left join channels on channels.channel = roles.channel
    where roles.channel_role = 'publishing'
),

publishing_expected as (
    -- The channel policy, in DESIGN §8's order: safety buffer, percentage rounded down, maximum, minimum.
    select
        p.*,
        case
            when p.master_available <= coalesce(c.safety_buffer, 0) then 0
            else greatest(
                least(
                    floor(p.master_available * coalesce(c.publish_percentage, 100) / 100),
                    coalesce(c.publish_maximum, floor(p.master_available * coalesce(c.publish_percentage, 100) / 100))
                ),
                coalesce(c.publish_minimum, 0)
            )
        end as expected_quantity
    from publishing_available as p
    left join channels as c on c.channel = p.channel
),

compared as (
    select
        channel, sku, location, channel_sku, channel_location, channel_role, snapshot_at, uom,
        channel_quantity, expected_quantity, tolerance_quantity, cast(null as numeric) as in_flight_seconds, loaded_at
    from master_expected
    union all
    select
        channel, sku, location, channel_sku, channel_location, channel_role, snapshot_at, uom,
        channel_quantity, expected_quantity, tolerance_quantity, in_flight_seconds, loaded_at
    from publishing_expected
),

pack_matches as (
    -- Drift whose ratio is a known pack factor: cases reported as eaches, or the reverse.
    select compared.channel, compared.sku, compared.location, min(f.factor_to_base) as pack_factor_matched
    from compared
    inner join pack_factors as f on f.sku = compared.sku
    where compared.expected_quantity <> 0
        and compared.channel_quantity <> compared.expected_quantity
        and (
            compared.channel_quantity = floor(compared.expected_quantity / f.factor_to_base)
            or compared.channel_quantity = compared.expected_quantity * f.factor_to_base
        )
    group by compared.channel, compared.sku, compared.location
),

sku_changes as (
    -- When the master's figure last moved (occurred_at), and when the ledger last learned of a move
    -- (loaded_at): a back-dated event, or a receipt held back until its cost arrives, is learned late.
    select sku, location, max(occurred_at) as master_changed_at, max(loaded_at) as master_learned_at
    from ledger
    group by sku, location
),

master_changes as (
    -- A kit's master figure moves when any of its components moves.
    select sku, location, max(master_changed_at) as master_changed_at, max(master_learned_at) as master_learned_at
    from (
        select sku, location, master_changed_at, master_learned_at from sku_changes
        union all
        select k.kit_sku as sku, c.location, c.master_changed_at, c.master_learned_at
        from kit_components as k
        inner join sku_changes as c on c.sku = k.component_sku
        union all
        -- ... and when a component's shortfall is first seen.
        select k.kit_sku as sku, s.location, null, s.shortfall_learned_at
        from kit_components as k
        inner join master_shortfall as s on s.sku = k.component_sku
    ) as changes
    group by sku, location
),

last_set as (
    -- When this platform last set each channel level (a correction that applied).
    select channel, sku, location, max(updated_at) as last_set_at
    from {{ source('ops', 'corrections') }}
    where status = 'applied'
    group by channel, sku, location
),

enriched as (
    select
        compared.*,
        compared.channel_quantity - compared.expected_quantity as drift_quantity,
        pack_matches.pack_factor_matched,
        feed_positions.feed_read_to,
        -- The ledger is known to be short here: the master's feed has not been read up to its snapshot
        -- (this row's own, for the master; for a publishing row, its master's: held_back).
        coalesce(
            case when compared.channel_role = 'master'
                then feed_positions.feed_read_to is null or compared.snapshot_at > feed_positions.feed_read_to
                else held_back.sku is not null end,
            false
        ) as is_feed_behind,
        master_changes.master_changed_at,
        -- What a publishing channel is offered also moves when its master's shortfall is first seen.
        case
            when compared.channel_role = 'publishing'
                then greatest(master_changes.master_learned_at, master_shortfall.shortfall_learned_at)
            else master_changes.master_learned_at
        end as master_learned_at,
        last_set.last_set_at,
        positions.unit_cost_avco
    from compared
    left join pack_matches
        on pack_matches.channel = compared.channel
        and pack_matches.sku = compared.sku
        and pack_matches.location = compared.location
    left join master_changes on master_changes.sku = compared.sku and master_changes.location = compared.location
    left join master_shortfall
        on master_shortfall.sku = compared.sku and master_shortfall.location = compared.location
    left join last_set
        on last_set.channel = compared.channel
        and last_set.sku = compared.sku
        and last_set.location = compared.location
    left join feed_positions on feed_positions.channel = compared.channel
    left join held_back on held_back.sku = compared.sku and held_back.location = compared.location
    left join positions on positions.sku = compared.sku and positions.location = compared.location
),

final as (
    select
        channel,
        sku,
        location,
        channel_sku,
        channel_location,
        channel_role,
        snapshot_at,
        channel_quantity,
        expected_quantity,
        drift_quantity,
        round(drift_quantity * coalesce(unit_cost_avco, 0), 2) as drift_value,
        case
            when drift_quantity = 0 then 'none'
            when pack_factor_matched is not null then 'uom'
            -- The master's feed has not been read up to its own snapshot of this SKU here (a kit: of any
            -- component): the ledger, hence expected_quantity, is known to be incomplete, so no correction
            -- may be planned from it. It waits (lag) until the feed is read past that snapshot. After uom:
            -- a figure in cases is a unit confusion whatever the ledger misses, and a uom correction is
            -- never pushed without a person; none stays first (a row that agrees has no drift to hold).
            when is_feed_behind then 'lag'
            -- In flight: the channel moved first (its own sale) and the master has not moved since, for no
            -- longer than the channel's orders may take to reach the master (after that, a hand edit or a
            -- sale the master will never report looks the same, and waiting would never end).
            when channel_role = 'publishing' and drift_quantity < 0 and -drift_quantity <= tolerance_quantity
                and (master_changed_at is null or master_changed_at <= snapshot_at)
                and cast('{{ run_started_at }}' as timestamptz) - snapshot_at
                    <= make_interval(secs => in_flight_seconds)
                then 'lag'
            when channel_role = 'master' then 'missed_event'
            -- The ledger learned of a master move since this platform last set the level (or it never
            -- has): the channel was never given that change, whatever the channel did meanwhile (its own
            -- sales, a stale compare). Learned, not occurred: a late-reported move happened earlier.
            when master_learned_at > coalesce(last_set_at, '-infinity'::timestamptz) then 'missed_event'
            -- Set after the master's last change, and off now: changed in the channel by someone else.
            else 'unexplained'
        end as drift_class,
        case
            when drift_quantity = 0 then 0
            else greatest(
                extract(epoch from (cast('{{ run_started_at }}' as timestamptz) - greatest(snapshot_at, master_changed_at))),
                0
            )
        end as persisted_seconds,
        tolerance_quantity,
        is_feed_behind,
        pack_factor_matched,
        loaded_at
    from enriched
)

select * from final
