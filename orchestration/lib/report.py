"""The finance valuation report: `inventory-sync report valuation`.

Owns the period roll-forward of stock value per SKU and location (opening value, the flows of the
period by kind, closing value), its reconciliation (opening + flows = closing, exactly, checked here for
every line and the totals), the drill-down data (each line's movements, the cost-of-goods lineage of
every issue back to its source receipt, the open FIFO layers) and the two renderings: one
self-contained HTML file (inline CSS, JS and SVG, nothing fetched) and CSV. It reads only the marts
(`fct_inventory_valuation`, `fct_cost_of_goods`, `fct_cost_layers`, `fct_stock_movements`,
`fct_stock_positions`), as the finance role.

Sign convention: every flow is its effect on stock value (inbound positive, outbound negative), so
opening + Σ flows = closing. Receipts and other inbound flows are at their full cost; the part of an
inbound cost that settled negative stock (DESIGN §7 rule 11) is not stock value: it is shown, negated,
in `revaluations` (a cost-of-goods adjustment).
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

METHODS = ("fifo", "avco")
FORMATS = ("html", "csv")
CENT = Decimal("0.01")
ZERO = Decimal(0)

# (key, heading, what it holds) in roll-forward order; the keys are the CSV columns.
FLOWS: tuple[tuple[str, str, str], ...] = (
    ("receipts", "Receipts", "Goods received from suppliers, at their purchase cost."),
    ("vendor_returns", "Returns to suppliers", "Goods sent back to suppliers, at the cost they carried."),
    ("cost_of_goods_sold", "Cost of goods sold", "Sales at the cost they carried, net of customer returns."),
    ("write_offs", "Write-offs", "Damage, negative adjustments and physical counts below book."),
    ("stock_gains", "Stock gains", "Positive adjustments and physical counts above book."),
    ("transfers_in", "Transfers in", "Stock received from another location, at the cost that left it."),
    ("transfers_out", "Transfers out", "Stock sent to another location (in transit until received)."),
    ("revaluations", "Revaluations",
     "Negative-stock settlements (DESIGN §7 rule 11): the part of an inbound cost that corrects the "
     "provisional cost of units sold before they were in stock; booked to cost of goods, not to stock."),
)
FLOW_KEYS = tuple(k for k, _, _ in FLOWS)
CSV_COLUMNS = ("sku", "location", "currency", "method", "period_start", "period_end", "opening_quantity",
               "opening_value", *FLOW_KEYS, "closing_value", "closing_quantity", "rounding_difference")

# The flow each movement type belongs to (adjustments and counts by the sign of their quantity).
FLOW_SQL = """case
        when v.movement_type = 'receipt' then 'receipts'
        when v.movement_type = 'vendor_return' then 'vendor_returns'
        when v.movement_type in ('sale', 'customer_return') then 'cost_of_goods_sold'
        when v.movement_type = 'transfer_in' then 'transfers_in'
        when v.movement_type = 'transfer_out' then 'transfers_out'
        when v.movement_type = 'damage' then 'write_offs'
        when coalesce(v.quantity_base, 0) < 0 then 'write_offs'
        else 'stock_gains'
    end"""


class ReportError(RuntimeError):
    """A report that cannot be made (bad option, empty warehouse, a figure that does not reconcile)."""


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


def parse_when(text: str | None, *, end_of_day: bool, option: str) -> datetime | None:
    """`2024-03-31` (the start, or with end_of_day the end, of that UTC day) or an ISO 8601 timestamp."""
    if text is None:
        return None
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            if end_of_day:
                return datetime.combine(day, time.max, tzinfo=UTC)
            return datetime.combine(day, time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{option} {text!r} is not a date; use YYYY-MM-DD or an ISO 8601 timestamp "
                          "such as 2024-03-31T18:00:00+00:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise ReportError(f"unknown {option} {value!r}; one of {', '.join(choices)}")
    return value


# --------------------------------------------------------------------------------------------------
# The report's data
# --------------------------------------------------------------------------------------------------


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class Line:
    """One SKU at one location over the period, exact (unrounded) figures."""

    sku: str
    location: str
    currency: str
    opening_quantity: Decimal
    opening_value: Decimal
    flows: dict[str, Decimal]
    closing_quantity: Decimal
    closing_value: Decimal
    movements: int = 0
    position_value: Decimal | None = None  # fct_stock_positions' value by this method, for the tie-out

    def rounded(self) -> dict[str, Decimal]:
        """The figures to the cent, with the rounding difference that makes them add up on paper."""
        out = {"opening_value": cents(self.opening_value), **{k: cents(v) for k, v in self.flows.items()},
               "closing_value": cents(self.closing_value)}
        out["rounding_difference"] = out["closing_value"] - out["opening_value"] - sum(out[k] for k in FLOW_KEYS)
        return out

    def reconciles(self) -> bool:
        return self.opening_value + sum(self.flows.values()) == self.closing_value


@dataclass
class ValuationReport:
    method: str
    period_start: datetime | None  # None: from the first movement
    period_end: datetime
    first_movement_at: datetime | None
    last_movement_at: datetime | None
    generated_at: datetime
    lines: list[Line]
    closing_by_method: dict[tuple[str, str], dict[str, Decimal]]  # (location, currency) → method → closing value
    details: dict[int, dict] = field(default_factory=dict)  # line index → drill-down data
    tie_out: list[str] = field(default_factory=list)  # lines whose closing value differs from fct_stock_positions
    tied_out: bool = False  # whether the tie-out to fct_stock_positions applied (period end ≥ last movement)
    in_transit: dict[str, Decimal] = field(default_factory=dict)  # currency → value sent, not yet received, at the end

    @property
    def currencies(self) -> list[str]:
        return sorted({ln.currency for ln in self.lines})

    def totals(self) -> dict[str, Line]:
        """Per currency, the exact sum of the lines."""
        out: dict[str, Line] = {}
        for ln in self.lines:
            t = out.setdefault(ln.currency, Line("", "", ln.currency, ZERO, ZERO, dict.fromkeys(FLOW_KEYS, ZERO), ZERO, ZERO))
            t.opening_quantity += ln.opening_quantity
            t.opening_value += ln.opening_value
            for k in FLOW_KEYS:
                t.flows[k] += ln.flows[k]
            t.closing_quantity += ln.closing_quantity
            t.closing_value += ln.closing_value
            t.movements += ln.movements
        return out

    def by_location(self) -> list[Line]:
        out: dict[tuple[str, str], Line] = {}
        for ln in self.lines:
            t = out.setdefault((ln.location, ln.currency), Line("", ln.location, ln.currency, ZERO, ZERO,
                                                               dict.fromkeys(FLOW_KEYS, ZERO), ZERO, ZERO))
            t.opening_value += ln.opening_value
            for k in FLOW_KEYS:
                t.flows[k] += ln.flows[k]
            t.closing_value += ln.closing_value
            t.movements += ln.movements
        return [out[k] for k in sorted(out)]

    def check(self) -> None:
        """Opening + flows = closing, exactly, for every line and every total; a ReportError otherwise."""
        bad = [f"{ln.sku} @ {ln.location}" for ln in self.lines if not ln.reconciles()]
        bad += [f"total {c}" for c, t in self.totals().items() if not t.reconciles()]
        for ln in self.lines:
            if abs(ln.rounded()["rounding_difference"]) > CENT * (len(FLOW_KEYS) + 2) / 2:
                bad.append(f"{ln.sku} @ {ln.location} (rounding)")
        if bad:
            raise ReportError(f"the valuation does not reconcile (opening + flows ≠ closing) for {len(bad)} "
                              f"line(s), e.g. {', '.join(bad[:3])}; rebuild the marts (`inventory-sync run`) "
                              "and report a bug if it persists")


def _relation_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()[0]


_MARTS = ("marts.fct_inventory_valuation", "marts.fct_cost_of_goods", "marts.fct_cost_layers",
          "marts.fct_stock_movements", "marts.fct_stock_positions")


def build_valuation_report(conn: psycopg.Connection, method: str = "fifo", as_of: datetime | None = None,
                           start: datetime | None = None, sku: str | None = None, location: str | None = None,
                           detail: bool = True, now: datetime | None = None) -> ValuationReport:
    """The report for one method over (start, as_of]: movements with start ≤ occurred_at ≤ as_of are the
    period's flows, earlier ones make the opening value. `sku` and `location` are SQL LIKE patterns."""
    check_choice(method, METHODS, "method")
    now = now or datetime.now(UTC)
    end = as_of or now
    if start is not None and start > end:
        raise ReportError(f"--from ({start.isoformat()}) is after --as-of ({end.isoformat()}); swap them")
    missing = [m for m in _MARTS if not _relation_exists(conn, m)]
    if missing:
        raise ReportError(f"the warehouse has no valuation yet ({missing[0]} does not exist); run "
                          "`inventory-sync run` or `inventory-sync demo` first")
    first, last = conn.execute(
        "select min(occurred_at), max(occurred_at) from marts.fct_inventory_valuation where method = %s",
        (method,)).fetchone()
    if first is None:
        raise ReportError("the warehouse has no valued movements yet; import movements "
                          "(`inventory-sync import movements FILE`) or run a sync cycle, then try again")
    params = {"method": method, "start": start or datetime(1, 1, 1, tzinfo=UTC), "end": end,
              "sku": sku, "location": location}
    where = """v.method = %(method)s and v.occurred_at <= %(end)s
               and (%(sku)s::text is null or v.sku like %(sku)s)
               and (%(location)s::text is null or v.location like %(location)s)"""
    flow_sums = ",\n".join(
        f"coalesce(sum(stock_value_change + revaluation_amount) filter (where in_period and flow = '{k}'), 0) as {k}"
        for k in FLOW_KEYS if k != "revaluations")
    query = f"""
        with valued as (
            select v.sku, v.location, v.quantity_base,
                   coalesce(v.stock_value_change, 0) as stock_value_change,
                   coalesce(v.revaluation_amount, 0) as revaluation_amount,
                   v.occurred_at >= %(start)s as in_period,
                   {FLOW_SQL} as flow
            from marts.fct_inventory_valuation as v
            where {where}
        ),
        currencies as (
            select sku, location, mode() within group (order by currency) as currency
            from marts.fct_stock_movements where currency is not null group by sku, location
        ),
        sku_currencies as (
            select sku, mode() within group (order by currency) as currency
            from marts.fct_stock_movements where currency is not null group by sku
        ),
        rolled as (
            select sku, location,
                   coalesce(sum(quantity_base) filter (where not in_period), 0) as opening_quantity,
                   coalesce(sum(stock_value_change) filter (where not in_period), 0) as opening_value,
                   {flow_sums},
                   coalesce(sum(-revaluation_amount) filter (where in_period), 0) as revaluations,
                   coalesce(sum(quantity_base), 0) as closing_quantity,
                   coalesce(sum(stock_value_change), 0) as closing_value,
                   count(*) filter (where in_period) as movements
            from valued group by sku, location
        )
        select r.*, coalesce(c.currency, s.currency, '') as currency,
               p.inventory_value_{method} as position_value
        from rolled as r
        left join currencies as c using (sku, location)
        left join sku_currencies as s using (sku)
        left join marts.fct_stock_positions as p using (sku, location)
        order by r.sku, r.location"""  # noqa: S608 - method is one of METHODS, keys are constants
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    if not rows:
        raise ReportError("no valued movements match" + (f" --sku {sku}" if sku else "")
                          + (f" --location {location}" if location else "")
                          + f" up to {end.date().isoformat()}; widen the filters or the period")
    lines = [Line(sku=r["sku"], location=r["location"], currency=r["currency"],
                  opening_quantity=r["opening_quantity"], opening_value=r["opening_value"],
                  flows={k: r[k] for k in FLOW_KEYS}, closing_quantity=r["closing_quantity"],
                  closing_value=r["closing_value"], movements=r["movements"], position_value=r["position_value"])
             for r in rows]

    # Closing value by both methods per location and currency (a SKU carries one currency), for the chart.
    currency_of = {(ln.sku, ln.location): ln.currency for ln in lines}
    closing_by_method: dict[tuple[str, str], dict[str, Decimal]] = {}
    for sku_, loc, meth, value in conn.execute(
            """select v.sku, v.location, v.method, coalesce(sum(v.stock_value_change), 0)
               from marts.fct_inventory_valuation as v
               where v.occurred_at <= %(end)s
                 and (%(sku)s::text is null or v.sku like %(sku)s)
                 and (%(location)s::text is null or v.location like %(location)s)
               group by 1, 2, 3""", params).fetchall():
        key = (loc, currency_of.get((sku_, loc), ""))
        by_method = closing_by_method.setdefault(key, dict.fromkeys(METHODS, ZERO))
        by_method[meth] += value

    # Value in transit at the end: transfers sent and not yet received are in no location's value.
    sku_currency = {ln.sku: ln.currency for ln in lines}
    in_transit: dict[str, Decimal] = {}
    for sku_, value in conn.execute(
            """select distinct on (v.sku) v.sku, coalesce(v.in_transit_value, 0)
               from marts.fct_inventory_valuation as v
               where v.method = %(method)s and v.occurred_at <= %(end)s
                 and (%(sku)s::text is null or v.sku like %(sku)s)
               order by v.sku, v.valuation_sequence desc""", params).fetchall():
        if value and sku_ in sku_currency:
            in_transit[sku_currency[sku_]] = in_transit.get(sku_currency[sku_], ZERO) + value
    report = ValuationReport(method=method, period_start=start, period_end=end, first_movement_at=first,
                             last_movement_at=last, generated_at=now, lines=lines,
                             closing_by_method=closing_by_method, in_transit=in_transit)
    # The closing value at the latest movement must be the current position value the marts publish.
    if end >= last:
        report.tied_out = True
        report.tie_out = [f"{ln.sku} @ {ln.location}" for ln in lines
                          if ln.position_value is not None and ln.position_value != ln.closing_value]
    report.check()
    if detail:
        report.details = _details(conn, report, params, where)
    return report


def _details(conn: psycopg.Connection, report: ValuationReport, params: dict, where: str) -> dict[int, dict]:
    """Per line: the period's movements (with their cost lines) and the open FIFO layers."""
    index = {(ln.sku, ln.location): i for i, ln in enumerate(report.lines)}
    out: dict[int, dict] = {i: {"movements": [], "layers": []} for i in index.values()}
    with conn.cursor(row_factory=dict_row) as cur:
        movements = cur.execute(f"""
            select v.movement_id, v.event_id, v.source_name, v.sku, v.location, v.occurred_at,
                   v.movement_type, {FLOW_SQL} as flow, v.quantity_base, v.unit_cost_applied,
                   coalesce(v.stock_value_change, 0) as stock_value_change,
                   coalesce(v.revaluation_amount, 0) as revaluation_amount,
                   v.balance_quantity, v.balance_value, m.reference
            from marts.fct_inventory_valuation as v
            left join marts.fct_stock_movements as m using (movement_id)
            where {where} and v.occurred_at >= %(start)s
            order by v.sku, v.valuation_sequence""", params).fetchall()  # noqa: S608 - constant text
        by_movement: dict[str, dict] = {}
        for m in movements:
            m["cost_lines"] = []
            by_movement[m["movement_id"]] = m
            out[index[(m["sku"], m["location"])]]["movements"].append(m)
        lines = cur.execute("""
            select g.booked_movement_id, g.issue_event_id, g.issued_at, g.movement_type, g.cost_kind,
                   g.source_movement_id, g.source_event_id, g.quantity_base, g.unit_cost_base, g.cost_amount,
                   g.provisional_unit_cost_base, s.occurred_at as source_occurred_at,
                   s.movement_type as source_movement_type, s.reference as source_reference,
                   s.location as source_location
            from marts.fct_cost_of_goods as g
            left join marts.fct_stock_movements as s on s.movement_id = g.source_movement_id
            where g.method = %(method)s and g.booked_at >= %(start)s and g.booked_at <= %(end)s
              and (%(sku)s::text is null or g.sku like %(sku)s)
            order by g.booked_movement_id, g.line_sequence""", params).fetchall()
        for g in lines:
            if g["booked_movement_id"] in by_movement:
                by_movement[g["booked_movement_id"]]["cost_lines"].append(g)
        layers = cur.execute("""
            select l.sku, l.location, l.layer_sequence, l.source_event_id, l.source_movement_type,
                   l.quantity_remaining_base, l.unit_cost_base, l.layer_value, l.received_at,
                   l.received_event_id, s.occurred_at as source_occurred_at, s.reference as source_reference
            from marts.fct_cost_layers as l
            left join marts.fct_stock_movements as s on s.movement_id = l.source_movement_id
            where (%(sku)s::text is null or l.sku like %(sku)s)
              and (%(location)s::text is null or l.location like %(location)s)
            order by l.sku, l.location, l.layer_sequence""", params).fetchall()
        for layer in layers:
            i = index.get((layer["sku"], layer["location"]))
            if i is not None:
                out[i]["layers"].append(layer)
    return out


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros (quantities)."""
    text = format(value.normalize(), "f") if value != 0 else "0"
    return text


def render_csv(report: ValuationReport) -> str:
    """One row per SKU and location, money to the cent (no separators), quantities exact."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    start = report.period_start.isoformat() if report.period_start else ""
    for ln in report.lines:
        r = ln.rounded()
        writer.writerow([ln.sku, ln.location, ln.currency, report.method, start, report.period_end.isoformat(),
                         _plain(ln.opening_quantity), r["opening_value"], *(r[k] for k in FLOW_KEYS),
                         r["closing_value"], _plain(ln.closing_quantity), r["rounding_difference"]])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------


def money(value: Decimal | None) -> str:
    """1234.5 → '1,234.50'; negative with a minus sign. Empty for None."""
    if value is None:
        return ""
    return f"{cents(value):,.2f}"


def unit_cost(value: Decimal | None) -> str:
    if value is None:
        return ""
    return f"{value.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP):,.4f}"


def quantity(value: Decimal | None) -> str:
    if value is None:
        return ""
    text = f"{value.normalize():,f}" if value != 0 else "0"
    return text


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def period_text(report: ValuationReport) -> str:
    start = (_when(report.period_start) if report.period_start
             else f"the first movement ({_when(report.first_movement_at)})")
    return f"from {start} to {_when(report.period_end)}"


METHOD_NAMES = {"fifo": "FIFO (first in, first out)", "avco": "AVCO (weighted average cost)"}


def value_chart_svg(closing_by_method: dict[tuple[str, str], dict[str, Decimal]], highlight: str) -> str:
    """Horizontal grouped bars: closing stock value per location (and currency), FIFO and AVCO side by side.
    Bars are scaled within each currency: amounts in different currencies are never compared."""
    keys = sorted(closing_by_method)
    if not keys:
        return ""
    several = len({c for _, c in keys}) > 1
    peaks = {}
    for (_, cur), m in closing_by_method.items():
        peaks[cur] = max(peaks.get(cur, ZERO), *(abs(v) for v in m.values()))
    label_w, bar_w, row_h, bar_h = 170, 460, 44, 15
    width = label_w + bar_w + 140
    height = 40 + row_h * len(keys)
    colors = {"fifo": "#1f6fb2", "avco": "#e08a1e"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" aria-label="Closing stock value by location, '
             'FIFO and AVCO">',
             f'<g font-size="12" fill="#333"><rect x="{label_w}" y="6" width="12" height="12" fill="{colors["fifo"]}"/>'
             f'<text x="{label_w + 18}" y="16">FIFO</text>'
             f'<rect x="{label_w + 70}" y="6" width="12" height="12" fill="{colors["avco"]}"/>'
             f'<text x="{label_w + 88}" y="16">AVCO</text></g>']
    for i, (loc, currency) in enumerate(keys):
        y = 30 + i * row_h
        label = f"{loc} ({currency})" if several else loc
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h + 4}" text-anchor="end" font-size="12">'
                     f'{html.escape(label)}</text>')
        for j, meth in enumerate(METHODS):
            value = closing_by_method[(loc, currency)][meth]
            w = float(abs(value) / (peaks[currency] or Decimal(1))) * bar_w
            by = y + j * (bar_h + 2)
            opacity = "1" if meth == highlight else "0.75"
            parts.append(f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="{bar_h}" fill="{colors[meth]}" '
                         f'opacity="{opacity}"><title>{html.escape(loc)} {meth.upper()}: {money(value)} '
                         f'{html.escape(currency)}</title></rect>')
            parts.append(f'<text x="{label_w + w + 6:.1f}" y="{by + bar_h - 3}" font-size="11">'
                         f'{money(value)}{" " + html.escape(currency) if several else ""}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _detail_json(report: ValuationReport) -> str:
    """Drill-down data, figures pre-formatted here (Decimal) so the page never does money in floats."""
    data = {}
    for i, d in report.details.items():
        data[str(i)] = {
            "m": [{
                "id": m["event_id"], "src": m["source_name"], "at": _when(m["occurred_at"]),
                "type": m["movement_type"], "flow": m["flow"], "ref": m["reference"] or "",
                "qty": quantity(m["quantity_base"]), "uc": unit_cost(m["unit_cost_applied"]),
                "value": money(m["stock_value_change"] + m["revaluation_amount"]),
                "reval": money(-m["revaluation_amount"]) if m["revaluation_amount"] else "",
                "bq": quantity(m["balance_quantity"]), "bv": money(m["balance_value"]),
                "lines": [{
                    "kind": g["cost_kind"], "src": g["source_event_id"] or "",
                    "srctype": g["source_movement_type"] or "", "srcat": _when(g["source_occurred_at"]),
                    "srcref": g["source_reference"] or "", "srcloc": g["source_location"] or "",
                    "issue": g["issue_event_id"] or "", "qty": quantity(g["quantity_base"]),
                    "uc": unit_cost(g["unit_cost_base"]), "amount": money(g["cost_amount"]),
                } for g in m["cost_lines"]],
            } for m in d["movements"]],
            "l": [{
                "seq": layer["layer_sequence"], "src": layer["source_event_id"] or "",
                "srctype": layer["source_movement_type"] or "", "srcat": _when(layer["source_occurred_at"]),
                "srcref": layer["source_reference"] or "", "recv": layer["received_event_id"] or "",
                "recvat": _when(layer["received_at"]), "qty": quantity(layer["quantity_remaining_base"]),
                "uc": unit_cost(layer["unit_cost_base"]), "value": money(layer["layer_value"]),
            } for layer in d["layers"]],
        }
    # </script> cannot appear inside the JSON: escape '<' (valid JSON, read by JSON.parse).
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


TEMPLATE_PATH = Path(__file__).with_name("report_template.html")


def _cell(value: Decimal, line: int | None = None, flow: str | None = None) -> str:
    cls = "num neg" if cents(value) < 0 else "num"
    text = money(value)
    if line is None:
        return f'<td class="{cls}">{text}</td>'
    return (f'<td class="{cls}"><a href="#drill" class="fig" data-line="{line}" data-flow="{flow}" '
            f'title="Show the movements and cost lineage behind this figure">{text}</a></td>')


def render_html(report: ValuationReport) -> str:
    """ONE self-contained HTML page: nothing is fetched, it opens from a file or an e-mail attachment."""
    esc = html.escape
    currencies = report.currencies
    currency = currencies[0] if len(currencies) == 1 else ""
    totals = report.totals()
    head_cells = "".join(f'<th class="num" title="{esc(desc)}">{esc(label)}</th>' for _, label, desc in FLOWS)
    header = (f'<tr><th>SKU</th><th>Location</th>{"" if currency else "<th>Currency</th>"}'
              f'<th class="num">Opening qty</th><th class="num">Opening value</th>{head_cells}'
              f'<th class="num">Closing value</th><th class="num">Closing qty</th><th class="num">Rounding</th></tr>')
    rows = []
    for i, ln in enumerate(report.lines):
        r = ln.rounded()
        rows.append(
            f'<tr data-line="{i}" data-sku="{esc(ln.sku)}" data-location="{esc(ln.location)}">'
            f'<td>{esc(ln.sku)}</td><td>{esc(ln.location)}</td>{"" if currency else f"<td>{esc(ln.currency)}</td>"}'
            f'<td class="num">{quantity(ln.opening_quantity)}</td>{_cell(ln.opening_value, i, "opening")}'
            + "".join(_cell(ln.flows[k], i, k) for k in FLOW_KEYS)
            + f'{_cell(ln.closing_value, i, "closing")}<td class="num">{quantity(ln.closing_quantity)}</td>'
            f'<td class="num">{money(r["rounding_difference"]) if r["rounding_difference"] else ""}</td></tr>')
    total_rows = []
    for cur, t in totals.items():
        r = t.rounded()
        total_rows.append(
            f'<tr class="total"><td colspan="{2 if currency else 3}">Total{"" if currency else " " + esc(cur)}</td>'
            f'<td class="num">{quantity(t.opening_quantity)}</td>{_cell(t.opening_value)}'
            + "".join(_cell(t.flows[k]) for k in FLOW_KEYS)
            + f'{_cell(t.closing_value)}<td class="num">{quantity(t.closing_quantity)}</td>'
            f'<td class="num">{money(r["rounding_difference"]) if r["rounding_difference"] else ""}</td></tr>')

    loc_rows = "".join(
        f'<tr><td>{esc(t.location)}</td>{"" if currency else f"<td>{esc(t.currency)}</td>"}'
        f'{_cell(t.opening_value)}{_cell(sum(t.flows.values(), ZERO))}{_cell(t.closing_value)}'
        f'<td class="num">{money(report.closing_by_method.get((t.location, t.currency), {}).get("fifo"))}</td>'
        f'<td class="num">{money(report.closing_by_method.get((t.location, t.currency), {}).get("avco"))}</td></tr>'
        for t in report.by_location())

    summary = []
    for cur, t in totals.items():
        r = t.rounded()
        items = [("Opening value", r["opening_value"], "opening")] + [
            (label, r[k], k) for k, label, _ in FLOWS] + [("Closing value", r["closing_value"], "closing")]
        cards = "".join(
            f'<div class="card {"key" if k in ("opening", "closing") else ""}" data-total="{k}">'
            f'<div class="label">{esc(label)}</div><div class="value {"neg" if v < 0 else ""}">{money(v)}</div>'
            f'<div class="cur">{esc(cur)}</div></div>' for label, v, k in items)
        flows_sum = sum((r[k] for k in FLOW_KEYS), ZERO)
        summary.append(
            f'<div class="cards">{cards}</div>'
            f'<p class="reconcile" data-currency="{esc(cur)}">✔ Reconciled: opening {money(r["opening_value"])} '
            f'+ movements of the period {money(flows_sum)}'
            + (f' + rounding {money(r["rounding_difference"])}' if r["rounding_difference"] else "")
            + f' = closing {money(r["closing_value"])} {esc(cur)}. Checked exactly (unrounded) for every '
            f'SKU and location before this page was written.</p>'
            + (f'<p class="note in-transit" data-currency="{esc(cur)}">In transit at the period end (transfers '
               f'sent, not yet received, so in no location\'s value): {money(report.in_transit[cur])} {esc(cur)}; '
               f'stock value including it: {money(t.closing_value + report.in_transit[cur])} {esc(cur)}.</p>'
               if report.in_transit.get(cur) else ""))

    if report.tied_out:
        tie = ('<p class="ok">✔ Closing values agree with the current stock positions '
               '(<code>marts.fct_stock_positions</code>).</p>' if not report.tie_out else
               f'<p class="warn">⚠ {len(report.tie_out)} closing value(s) differ from '
               f'<code>marts.fct_stock_positions</code>, e.g. {esc(", ".join(report.tie_out[:3]))}: rebuild the '
               'marts (<code>inventory-sync run</code>) before relying on this report.</p>')
    else:
        tie = ('<p class="note">The period ends before the latest movement, so closing values are the values '
               'at the period end, not today\'s positions. Open cost layers in the drill-down are today\'s.</p>')

    glossary = "".join(f"<dt>{esc(label)}</dt><dd>{esc(desc)}</dd>" for _, label, desc in FLOWS)
    template = TEMPLATE_PATH.read_text(encoding="utf-8")
    replacements = {
        "TITLE": esc(f"Inventory valuation ({report.method.upper()}) {period_text(report)}"),
        "METHOD_NAME": esc(METHOD_NAMES[report.method]),
        "METHOD": esc(report.method),
        "PERIOD": esc(period_text(report)),
        "GENERATED": esc(_when(report.generated_at)),
        "CURRENCY": esc(", ".join(currencies) or "–"),
        "LINES": str(len(report.lines)),
        "SUMMARY": "".join(summary),
        "TIE": tie,
        "CHART": value_chart_svg(report.closing_by_method, report.method),
        "LOC_HEAD": "" if currency else "<th>Currency</th>",
        "LOC_ROWS": loc_rows,
        "HEADER": header,
        "ROWS": "".join(rows),
        "TOTALS": "".join(total_rows),
        "GLOSSARY": glossary,
        "DATA": _detail_json(report),
    }
    for key, value in replacements.items():
        template = template.replace("{{" + key + "}}", value)
    return template


# --------------------------------------------------------------------------------------------------
# CLI (wired by orchestration/cli.py through add_report_commands)
# --------------------------------------------------------------------------------------------------


def cmd_report_valuation(args, settings) -> int:
    from orchestration.cli import CliError, prepare

    try:
        method = check_choice(args.method.lower(), METHODS, "--method")
        fmt = check_choice(args.format.lower(), FORMATS, "--format")
        as_of = parse_when(args.as_of, end_of_day=True, option="--as-of")
        start = parse_when(args.start, end_of_day=False, option="--from")
        wh = prepare(settings, quiet=True)
        with wh.connect("finance") as conn:
            conn.read_only = True
            report = build_valuation_report(conn, method, as_of=as_of, start=start, sku=args.sku,
                                            location=args.location, detail=fmt == "html")
    except ReportError as exc:
        raise CliError(str(exc)) from None
    except psycopg.Error as exc:
        raise CliError(f"reading the valuation marts failed: {str(exc).strip().splitlines()[0]}") from None
    text = render_html(report) if fmt == "html" else render_csv(report)
    if args.output in (None, "-") and fmt == "csv":
        sys.stdout.write(text)
    else:
        path = Path(args.output or f"valuation-{method}-{report.period_end.date().isoformat()}.html")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror}") from None
        totals = report.totals()
        closing = ", ".join(f"{money(t.closing_value)} {c}" for c, t in totals.items())
        print(f"wrote {path} ({len(report.lines)} SKU-location lines, {method.upper()}, {period_text(report)}; "
              f"closing value {closing}; reconciled)")
    if report.tie_out:
        print(f"warning: {len(report.tie_out)} closing value(s) differ from marts.fct_stock_positions, e.g. "
              f"{', '.join(report.tie_out[:3])}; rebuild the marts", file=sys.stderr)
    return 0


def add_report_commands(sub: argparse._SubParsersAction) -> None:
    """Add `report valuation` to the CLI's subparsers."""
    s = sub.add_parser("report", help="reports for people: valuation (finance)")
    kinds = s.add_subparsers(dest="report_kind", required=True, metavar="REPORT")
    v = kinds.add_parser(
        "valuation", help="stock value roll-forward per SKU and location with cost lineage (HTML or CSV)",
        description="Opening value, receipts, cost of goods, write-offs, revaluations, transfers and closing "
                    "value per SKU and location, reconciled to the cent; HTML drills down to cost layers "
                    "and the receipts behind every cost. Reads the marts as the finance role.")
    v.add_argument("--as-of", default=None, metavar="DATE",
                   help="end of the period: YYYY-MM-DD (end of that UTC day) or an ISO timestamp (default now)")
    v.add_argument("--from", dest="start", default=None, metavar="DATE",
                   help="start of the period: YYYY-MM-DD (start of that UTC day) or an ISO timestamp "
                        "(default the first movement, so the opening value is zero)")
    v.add_argument("--method", default="fifo", metavar="METHOD", help="fifo (default) or avco")
    v.add_argument("--format", default="html", metavar="FORMAT", help="html (default) or csv")
    v.add_argument("--output", default=None, metavar="PATH",
                   help="where to write (default: valuation-METHOD-DATE.html; CSV goes to stdout)")
    v.add_argument("--sku", default=None, metavar="PATTERN", help="only SKUs matching this SQL LIKE pattern")
    v.add_argument("--location", default=None, metavar="PATTERN", help="only locations matching this LIKE pattern")
    v.set_defaults(func=cmd_report_valuation)

