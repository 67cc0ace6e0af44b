"""The finance valuation report: figures reconcile, match hand-worked values and the marts, CSV and
HTML say the same thing, and bad options fail with one line and a non-zero exit."""

from __future__ import annotations

import argparse
import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal as D
from html.parser import HTMLParser

import pytest

from orchestration.lib import report as rpt
from tests.report.seed import EXPECTED_PERIOD, PERIOD, PREFIX, SKU_A, SKU_B, ST, WH

pytestmark = pytest.mark.integration


def build(warehouse, method="fifo", start=None, as_of=None, **kw):
    with warehouse.connect("finance") as conn:
        return rpt.build_valuation_report(
            conn, method, start=rpt.parse_when(start, end_of_day=False, option="--from"),
            as_of=rpt.parse_when(as_of, end_of_day=True, option="--as-of"), sku=PREFIX + "%", **kw)


def run_cli(argv, settings, capsys):
    """What cli.main does with `report …` (argparse → func → one-line error, exit 2)."""
    from orchestration.cli import CliError

    parser = argparse.ArgumentParser(prog="inventory-sync")
    rpt.add_report_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code = args.func(args, settings)
    except CliError as exc:
        print(f"inventory-sync: error: {exc}", file=__import__("sys").stderr)
        code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


class TableRows(HTMLParser):
    """Rows of #valuation-table tbody: (data-sku, data-location) → cell texts."""

    def __init__(self):
        super().__init__()
        self.rows, self._in, self._row, self._cell, self._key = {}, False, None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "valuation-table":
            self._in = True
        elif self._in and tag == "tr" and "data-sku" in a:
            self._key, self._row = (a["data-sku"], a["data-location"]), []
        elif self._row is not None and tag == "td":
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._key] = self._row
            self._row = None
        elif tag == "table" and self._in:
            self._in = False


@pytest.mark.parametrize("method", rpt.METHODS)
def test_period_figures_match_hand_worked_values(seeded_valuation, method):
    report = build(seeded_valuation, method, *PERIOD)
    lines = {(ln.sku, ln.location): ln for ln in report.lines}
    for (sku, loc, meth), expected in EXPECTED_PERIOD.items():
        if meth != method:
            continue
        ln = lines[(sku, loc)]
        figures = {"opening_value": ln.opening_value, "closing_value": ln.closing_value, **ln.flows}
        for key, value in figures.items():
            assert value == expected.get(key, D(0)), f"{sku}@{loc} {method} {key}: {value} != {expected.get(key, 0)}"


@pytest.mark.parametrize("method", rpt.METHODS)
@pytest.mark.parametrize("period", [(None, None), PERIOD, ("2024-01-05", "2024-01-10"), ("2024-01-11", None)])
def test_every_line_reconciles_and_ties_to_the_marts(seeded_valuation, method, period):
    report = build(seeded_valuation, method, *period)
    assert report.lines
    for ln in report.lines:
        assert ln.opening_value + sum(ln.flows.values()) == ln.closing_value
        r = ln.rounded()
        assert r["opening_value"] + sum(r[k] for k in rpt.FLOW_KEYS) + r["rounding_difference"] == r["closing_value"]
        assert abs(r["rounding_difference"]) <= D("0.05")
    with seeded_valuation.connect("finance") as conn:
        # closing value = the balance_value of the last movement by valuation order (independent of the sums)
        end = report.period_end
        balances = dict(((s, loc), v) for s, loc, v in conn.execute(
            """select distinct on (sku, location) sku, location, balance_value
               from marts.fct_inventory_valuation where method = %s and sku like %s and occurred_at <= %s
               order by sku, location, valuation_sequence desc""", (method, PREFIX + "%", end)).fetchall())
        positions = dict(((s, loc), v) for s, loc, v in conn.execute(
            f"select sku, location, inventory_value_{method} from marts.fct_stock_positions where sku like %s",  # noqa: S608
            (PREFIX + "%",)).fetchall())
    for ln in report.lines:
        assert ln.closing_value == balances[(ln.sku, ln.location)]
        if period[1] is None:
            assert ln.closing_value == positions[(ln.sku, ln.location)]
    if period[1] is None:
        assert report.tied_out and not report.tie_out


def test_rounding_difference_is_shown_not_hidden(seeded_valuation):
    ln = {(x.sku, x.location): x for x in build(seeded_valuation, "avco", *PERIOD).lines}[(SKU_A, WH)]
    r = ln.rounded()
    # 86.00 − 64.50 − 16.13 = 5.37, but the exact closing 5.375 rounds to 5.38
    assert (r["opening_value"], r["cost_of_goods_sold"], r["transfers_out"], r["closing_value"]) == (
        D("86.00"), D("-64.50"), D("-16.13"), D("5.38"))
    assert r["rounding_difference"] == D("0.01")


def test_a_line_that_does_not_reconcile_is_refused():
    line = rpt.Line("S", "L", "EUR", D(0), D(10), dict.fromkeys(rpt.FLOW_KEYS, D(0)), D(0), D("10.01"))
    report = rpt.ValuationReport("fifo", None, datetime.now(UTC), None, None, datetime.now(UTC), [line], {})
    with pytest.raises(rpt.ReportError, match="does not reconcile"):
        report.check()


@pytest.mark.parametrize("method", rpt.METHODS)
def test_csv_and_html_agree(seeded_valuation, session_settings, capsys, tmp_path, method):
    args = ["report", "valuation", "--method", method, "--from", PERIOD[0], "--as-of", PERIOD[1], "--sku", PREFIX + "%"]
    code, out, err = run_cli([*args, "--format", "csv"], session_settings, capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(rpt.CSV_COLUMNS)
    page = tmp_path / "valuation.html"
    code, out, err = run_cli([*args, "--output", str(page)], session_settings, capsys)
    assert code == 0, err
    assert f"wrote {page}" in out and "reconciled" in out
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page must not fetch anything"
    assert "<svg" in text and 'id="report-data"' in text and "EUR" in text
    table = TableRows()
    table.feed(text)
    assert len(table.rows) == len(rows) == 3
    for row in rows:
        cells = table.rows[(row["sku"], row["location"])]
        # cells: sku, location, opening qty, opening value, flows…, closing value, closing qty, rounding
        money_cells = cells[3:3 + 1 + len(rpt.FLOW_KEYS) + 1]
        expected = [row["opening_value"], *(row[k] for k in rpt.FLOW_KEYS), row["closing_value"]]
        assert money_cells == [f"{D(v):,.2f}" for v in expected]
        assert cells[-1] == ("" if D(row["rounding_difference"]) == 0 else f"{D(row['rounding_difference']):,.2f}")
        total = D(row["opening_value"]) + sum(D(row[k]) for k in rpt.FLOW_KEYS) + D(row["rounding_difference"])
        assert total == D(row["closing_value"])
    b = next(r for r in rows if r["sku"] == SKU_B)
    assert table.rows[(SKU_B, ST)][3] == "3,703.70"  # thousands separator, two decimals
    assert b["opening_value"] == "3703.70"


@pytest.mark.parametrize(("argv", "message"), [
    (["--method", "lifo"], "unknown --method 'lifo'; one of fifo, avco"),
    (["--format", "pdf"], "unknown --format 'pdf'; one of html, csv"),
    (["--as-of", "2024-13-45"], "--as-of '2024-13-45' is not a date"),
    (["--from", "yesterday"], "--from 'yesterday' is not a date"),
    (["--from", "2024-02-01", "--as-of", "2024-01-01"], "is after --as-of"),
    (["--sku", "NO-SUCH-SKU-%"], "no valued movements match --sku NO-SUCH-SKU-%"),
])
def test_bad_options_fail_with_one_line(seeded_valuation, session_settings, capsys, argv, message):
    code, out, err = run_cli(["report", "valuation", "--format", "csv", *argv], session_settings, capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert message in err


def test_empty_warehouse_fails_with_one_line(tmp_path, capsys):
    import os

    from orchestration.lib.warehouse import Warehouse
    from orchestration.settings import Settings

    settings = Settings(home=tmp_path / "empty-home")
    saved = dict(os.environ)  # the command exports that warehouse's variables; later tests need the session's
    try:
        code, out, err = run_cli(["report", "valuation"], settings, capsys)
    finally:
        Warehouse(settings).stop()
        os.environ.clear()
        os.environ.update(saved)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "the warehouse has no valuation yet" in err and "inventory-sync run" in err


@pytest.mark.parametrize(("method", "value"), [("fifo", D("18")), ("avco", D("16.125"))])
def test_value_in_transit_is_reported(seeded_valuation, tmp_path, method, value):
    # RPT-T1 left RPT-WH on 2024-01-04 09:00 and reached RPT-ST at 15:00
    report = build(seeded_valuation, method, None, "2024-01-04T12:00:00Z")
    assert report.in_transit == {"EUR": value}
    assert "In transit at the period end" in rpt.render_html(report)
    assert build(seeded_valuation, method, None, "2024-01-04T16:00:00Z").in_transit == {}
