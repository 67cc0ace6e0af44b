"""Dagster metadata a person reads in the UI instead of querying the warehouse.

Owns the figures attached to materializations: row counts per mart, drift by channel and class, the
corrections pushed and queued per channel, stock value FIFO vs AVCO, and small charts (value by
location, drift over time). Every function takes an open psycopg connection (a role that can read the
relation: `pusher` reads marts and ops.corrections; `transformer` reads marts), returns a plain
`dict[str, MetadataValue]` for `MaterializeResult(metadata=...)` / `Output.with_metadata`, and defines
nothing when imported.

How things render in the Dagster 1.13 UI (checked by tests/browser): `MetadataValue.md` renders
GitHub-flavoured markdown tables, and images given as `data:` URIs; raw HTML (an inline `<svg>`) is
stripped, so charts are SVG encoded as a `data:image/svg+xml;base64` image. Numeric entries (`int`,
`float`) are plotted over materializations on the asset's "Plots" tab, which is the "drift over
time" and "value over time" picture. Money is exact `numeric` in the warehouse; the floats here are
for display and plots only and are rounded to the cent first.
"""

from __future__ import annotations

import base64
import html
from decimal import ROUND_HALF_UP, Decimal

import dagster as dg
import psycopg
from psycopg import sql

CENT = Decimal("0.01")
PALETTE = ("#1f6fb2", "#e08a1e", "#2e9e5b", "#c0392b", "#8e44ad", "#7f8c8d")
DRIFT_CLASSES = ("none", "lag", "uom", "missed_event", "unexplained")
QUEUED = ("planned", "approved", "needs_review")
PUSHED = ("pushed", "applied")


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"


def _plot(value: Decimal | None) -> float:
    """A money figure for a plot: rounded to the cent, then float (display only)."""
    return float(Decimal(value or 0).quantize(CENT, rounding=ROUND_HALF_UP))


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(headers)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(map(_md_cell, headers)) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def bar_chart_svg(title: str, categories: list[str], series: dict[str, list[float]], unit: str = "",
                  fmt: str = "{:,.2f}") -> str:
    """Grouped horizontal bars, one group per category, one bar per series (zero bars left out), labelled."""
    label_w, bar_w, bar_h = 160, 420, 14
    n = max(1, len(series))
    group_h = n * (bar_h + 2) + 12
    width, height = label_w + bar_w + 120, 44 + group_h * max(1, len(categories))
    peak = max((abs(v) for vals in series.values() for v in vals), default=0) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Arial, sans-serif">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="8" y="16" font-size="13" font-weight="bold" fill="#1d2733">{html.escape(title)}</text>']
    for j, name in enumerate(series):
        x = label_w + j * 110
        out.append(f'<rect x="{x}" y="24" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
                   f'<text x="{x + 14}" y="33" font-size="11" fill="#333">{html.escape(name)}</text>')
    for i, cat in enumerate(categories):
        y = 44 + i * group_h
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h}" font-size="11" text-anchor="end" fill="#333">'
                   f'{html.escape(cat)}</text>')
        for j, vals in enumerate(series.values()):
            v = vals[i]
            if not v:
                continue
            w = abs(v) / peak * bar_w
            by = y + j * (bar_h + 2)
            out.append(f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="{bar_h}" '
                       f'fill="{PALETTE[j % len(PALETTE)]}"/>'
                       f'<text x="{label_w + w + 4:.1f}" y="{by + bar_h - 3}" font-size="10" fill="#333">'
                       f'{fmt.format(v)}{html.escape(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


def chart_markdown(title: str, svg: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{title}]({svg_data_uri(svg)})")


# --------------------------------------------------------------------------------------------------
# Row counts
# --------------------------------------------------------------------------------------------------


def row_count(conn: psycopg.Connection, schema: str, table: str) -> int:
    query = sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    return conn.execute(query).fetchone()[0]


def mart_row_counts(conn: psycopg.Connection, schema: str = "marts") -> dict[str, dg.MetadataValue]:
    """One entry per relation in the schema (`fct_stock_movements: 1234`), plus a markdown table."""
    names = [r[0] for r in conn.execute(
        "select table_name from information_schema.tables where table_schema = %s order by table_name",
        (schema,)).fetchall()]
    counts = {n: row_count(conn, schema, n) for n in names}
    meta: dict[str, dg.MetadataValue] = {f"rows/{n}": dg.MetadataValue.int(c) for n, c in counts.items()}
    meta["row_counts"] = dg.MetadataValue.md(
        markdown_table(["relation", "rows"], [[f"{schema}.{n}", f"{c:,}"] for n, c in counts.items()], ["l", "r"]))
    return meta


# --------------------------------------------------------------------------------------------------
# Per relation
# --------------------------------------------------------------------------------------------------


def drift_metadata(conn: psycopg.Connection) -> dict[str, dg.MetadataValue]:
    """marts.fct_channel_drift: drift by channel and class (rows, units, value), and drift over time."""
    rows = conn.execute("""
        select channel, drift_class, count(*), coalesce(sum(abs(drift_quantity)), 0),
               coalesce(sum(abs(drift_value)), 0), coalesce(max(persisted_seconds), 0)
        from marts.fct_channel_drift group by 1, 2 order by 1, 2""").fetchall()
    table = [[ch, cls, f"{n:,}", f"{q.normalize():,f}" if q else "0", _money(v),
              f"{int(p) // 60:,} min" if p else ""] for ch, cls, n, q, v, p in rows if cls != "none"]
    in_sync = {ch: n for ch, cls, n, *_ in rows if cls == "none"}
    md = ("**Drift by channel and class** (rows that differ from what the channel should show)\n\n"
          + (markdown_table(["channel", "class", "rows", "units off", "value off", "longest"], table,
                            ["l", "l", "r", "r", "r", "r"]) if table else "_No drift: every channel shows what it should._")
          + "\n\n" + ", ".join(f"{ch}: {n:,} in sync" for ch, n in in_sync.items()))
    meta: dict[str, dg.MetadataValue] = {"drift_by_channel_and_class": dg.MetadataValue.md(md)}
    # Numbers the UI plots across materializations: the drift-over-time picture.
    for cls in DRIFT_CLASSES[1:]:
        meta[f"drift_rows/{cls}"] = dg.MetadataValue.int(sum(n for _, c, n, *_ in rows if c == cls))
    meta["drift_value_abs"] = dg.MetadataValue.float(_plot(sum((v for _, c, _, _, v, _ in rows if c != "none"), Decimal(0))))
    # Drift by the hour of the channel snapshot, per class: what the latest picture looks like over time.
    hours = conn.execute("""
        select to_char(date_trunc('hour', snapshot_at), 'MM-DD HH24":00"'), drift_class, count(*)
        from marts.fct_channel_drift where drift_class <> 'none' and snapshot_at is not null
        group by 1, 2 order by 1 desc limit 60""").fetchall()
    if hours:
        buckets = sorted({h for h, _, _ in hours})[-12:]
        classes = [c for c in DRIFT_CLASSES[1:] if any(c == k for _, k, _ in hours)]
        series = {c: [float(sum(n for h, k, n in hours if h == b and k == c)) for b in buckets] for c in classes}
        meta["drift_over_time"] = chart_markdown(
            "Drifting rows by snapshot hour", bar_chart_svg("Drifting rows by snapshot hour (UTC)", buckets, series, fmt="{:,.0f}"))
    return meta


def stock_value_metadata(conn: psycopg.Connection) -> dict[str, dg.MetadataValue]:
    """marts.fct_stock_positions: stock value FIFO vs AVCO per currency (a SKU's currency is that of its
    movements; amounts in different currencies are never added), by location, and a chart."""
    rows = conn.execute("""
        with currencies as (
            select sku, mode() within group (order by currency) as currency
            from marts.fct_stock_movements where currency is not null group by sku
        )
        select coalesce(c.currency, '') as currency, p.location,
               coalesce(sum(p.inventory_value_fifo), 0), coalesce(sum(p.inventory_value_avco), 0),
               coalesce(sum(p.on_hand_quantity), 0), count(*) filter (where p.on_hand_quantity < 0)
        from marts.fct_stock_positions as p left join currencies as c using (sku)
        group by 1, 2 order by 1, 3 desc, 2""").fetchall()
    totals: dict[str, list[Decimal]] = {}
    for cur, _, fifo, avco, units, _ in rows:
        t = totals.setdefault(cur, [Decimal(0), Decimal(0), Decimal(0)])
        t[0], t[1], t[2] = t[0] + fifo, t[1] + avco, t[2] + units
    several = len(totals) > 1
    head = "\n\n".join(f"**Stock value {cur or '(no currency)'}**: FIFO **{_money(f)}**, AVCO **{_money(a)}** "
                     f"(difference {_money(f - a)}), {q.normalize():,f} units on hand"
                     for cur, (f, a, q) in totals.items()) or "_No stock positions._"
    table = markdown_table(
        ["location", *(["currency"] if several else []), "FIFO", "AVCO", "FIFO − AVCO", "units", "negative positions"],
        [[loc, *([cur] if several else []), _money(f), _money(a), _money(f - a), f"{q.normalize():,f}", neg or ""]
         for cur, loc, f, a, q, neg in rows[:40]],
        ["l", *(["l"] if several else []), "r", "r", "r", "r", "r"])
    meta: dict[str, dg.MetadataValue] = {"stock_value": dg.MetadataValue.md(head + "\n\n" + table)}
    for cur, (f, a, _) in totals.items():  # plotted over materializations: value over time, per currency
        meta[f"inventory_value_fifo/{cur or 'none'}"] = dg.MetadataValue.float(_plot(f))
        meta[f"inventory_value_avco/{cur or 'none'}"] = dg.MetadataValue.float(_plot(a))
    if rows:
        top = sorted(rows, key=lambda r: -abs(r[2]))[:15]
        meta["value_by_location"] = chart_markdown("Stock value by location", bar_chart_svg(
            "Stock value by location" + ("" if several else f" ({top[0][0]})"),
            [f"{r[1]} ({r[0]})" if several else r[1] for r in top],
            {"FIFO": [_plot(r[2]) for r in top], "AVCO": [_plot(r[3]) for r in top]}))
    return meta


def relation_metadata(conn: psycopg.Connection, schema: str, table: str) -> dict[str, dg.MetadataValue]:
    """What to attach to the materialization of `schema.table`: its row count (the standard
    `dagster/row_count`, shown on the asset page) and, for the marts people read, their figures."""
    meta: dict[str, dg.MetadataValue] = {"dagster/row_count": dg.MetadataValue.int(row_count(conn, schema, table))}
    extra = {("marts", "fct_channel_drift"): drift_metadata,
             ("marts", "fct_stock_positions"): stock_value_metadata}.get((schema, table))
    if extra is not None:
        meta.update(extra(conn))
    return meta


def push_metadata(conn: psycopg.Connection, channel: str) -> dict[str, dg.MetadataValue]:
    """A push asset (`push/<channel>/stock_corrections`): corrections pushed and queued, by status and class,
    and the outcomes of the last 24 hours of attempts (ops.sync_log)."""
    rows = conn.execute("""
        select status, drift_class, count(*) from ops.corrections where channel = %s
        group by 1, 2 order by 1, 2""", (channel,)).fetchall()
    by_status: dict[str, int] = {}
    for status, _, n in rows:
        by_status[status] = by_status.get(status, 0) + n
    outcomes = conn.execute("""
        select outcome, count(*) from ops.sync_log
        where channel = %s and requested_at > now() - interval '24 hours' group by 1 order by 1""",
        (channel,)).fetchall()
    md = (f"**Corrections for {channel}**: {sum(by_status.get(s, 0) for s in PUSHED):,} pushed, "
          f"{sum(by_status.get(s, 0) for s in QUEUED):,} queued "
          f"({by_status.get('needs_review', 0):,} waiting for review: `inventory-sync review list --channel {channel}`)\n\n"
          + (markdown_table(["status", "drift class", "corrections"], [[s, c, f"{n:,}"] for s, c, n in rows],
                            ["l", "l", "r"]) if rows else "_No corrections yet._")
          + "\n\n**Push attempts, last 24 h**: "
          + (", ".join(f"{o} {n:,}" for o, n in outcomes) if outcomes else "none"))
    return {
        "corrections": dg.MetadataValue.md(md),
        "corrections_pushed": dg.MetadataValue.int(sum(by_status.get(s, 0) for s in PUSHED)),
        "corrections_queued": dg.MetadataValue.int(sum(by_status.get(s, 0) for s in QUEUED)),
        "corrections_needs_review": dg.MetadataValue.int(by_status.get("needs_review", 0)),
        "corrections_failed": dg.MetadataValue.int(by_status.get("failed", 0)),
        "corrections_stale": dg.MetadataValue.int(by_status.get("stale", 0)),
    }
