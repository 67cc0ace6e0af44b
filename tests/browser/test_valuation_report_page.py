"""The valuation report opened in Chromium: the figures on the page are the marts' figures, the
drill-down shows the movements and the receipts behind a cost, the page raises no error and fetches
nothing."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from orchestration.lib import report as rpt
from tests.report.seed import PERIOD, PREFIX, SKU_A, ST, WH, seed

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROWS_JS = """JSON.stringify([...document.querySelectorAll('#valuation-table tbody tr')].map(tr => ({
  sku: tr.dataset.sku, location: tr.dataset.location,
  cells: [...tr.querySelectorAll('td')].map(td => td.innerText.trim())})))"""


def _marts_figures(warehouse, method, start, end):
    """The period's figures straight from the marts, by a query written independently of the report."""
    with warehouse.connect("finance") as conn:
        rows = conn.execute("""
            select sku, location,
                   sum(stock_value_change) filter (where occurred_at < %(s)s) as opening,
                   sum(stock_value_change + coalesce(revaluation_amount, 0))
                       filter (where occurred_at >= %(s)s and movement_type = 'receipt') as receipts,
                   sum(stock_value_change + coalesce(revaluation_amount, 0))
                       filter (where occurred_at >= %(s)s and movement_type in ('sale', 'customer_return')) as cogs,
                   sum(-coalesce(revaluation_amount, 0)) filter (where occurred_at >= %(s)s) as revaluations,
                   sum(stock_value_change) as closing
            from marts.fct_inventory_valuation
            where method = %(m)s and sku like %(p)s and occurred_at <= %(e)s
            group by 1, 2""", dict(s=start, e=end, m=method, p=PREFIX + "%")).fetchall()
    return {(r[0], r[1]): [rpt.money(v or D(0)) for v in r[2:]] for r in rows}


@pytest.mark.parametrize("method", rpt.METHODS)
def test_report_page_matches_the_marts_and_drills_down(warehouse, load_file_rows, dbt, page, tmp_path, method):
    seed(warehouse, load_file_rows, dbt)
    start = rpt.parse_when(PERIOD[0], end_of_day=False, option="--from")
    end = rpt.parse_when(PERIOD[1], end_of_day=True, option="--as-of")
    with warehouse.connect("finance") as conn:
        report = rpt.build_valuation_report(conn, method, as_of=end, start=start, sku=PREFIX + "%")
    path = tmp_path / f"valuation-{method}.html"
    path.write_text(rpt.render_html(report), encoding="utf-8")

    page.navigate(path.as_uri())
    page.wait_for("document.querySelectorAll('#valuation-table tbody tr').length > 0", what="the report table")
    page.screenshot(tmp_path / f"report-{method}.png", full_page=True)

    # the figures on the page are the marts' figures
    rows = {(r["sku"], r["location"]): r["cells"] for r in json.loads(page.evaluate(ROWS_JS))}
    marts = _marts_figures(warehouse, method, start, end)
    assert set(rows) == set(marts)
    flow = {k: 4 + i for i, k in enumerate(rpt.FLOW_KEYS)}  # cells: sku, location, opening qty, opening value, flows…
    closing = 4 + len(rpt.FLOW_KEYS)
    for key, (opening, receipts, cogs, revaluations, closing_value) in marts.items():
        cells = rows[key]
        assert cells[3] == opening and cells[closing] == closing_value, (key, cells)
        assert cells[flow["receipts"]] == receipts and cells[flow["cost_of_goods_sold"]] == cogs, (key, cells)
        assert cells[flow["revaluations"]] == revaluations, (key, cells)
    text = page.text()
    assert "Reconciled" in text and "EUR" in text
    assert page.evaluate("document.querySelectorAll('svg.chart rect').length") >= 4

    # drill-down: the store's cost of goods → the sale → the receipt its cost came from
    line = next(i for i, ln in enumerate(report.lines) if (ln.sku, ln.location) == (SKU_A, ST))
    assert page.evaluate("document.getElementById('drill').hidden") is True
    page.click(f'a.fig[data-line="{line}"][data-flow="cost_of_goods_sold"]')
    page.wait_for("!document.getElementById('drill').hidden", what="the drill-down")
    drill = page.evaluate("document.getElementById('drill').innerText")
    page.screenshot(tmp_path / f"drill-{method}.png", full_page=True)
    assert "RPT-A at RPT-ST" in drill and "Cost of goods sold" in drill
    assert "RPT-e7" in drill  # the sale in the period
    highlighted = page.evaluate("[...document.querySelectorAll('#drill tr.hit')].map(t => t.innerText).join('\\n')")
    assert "RPT-e7" in highlighted and "sale" in highlighted
    if method == "fifo":
        # the sale's units came from the transfer that brought receipt RPT-e2's layer (PO-2), 2 of them
        # beyond the layers at the provisional cost; the open layers today come from receipt RPT-e8 (PO-3)
        assert "from receipt RPT-e2 (PO-2)" in drill, drill
        assert "provisional" in drill
        layers = page.evaluate("document.getElementById('drill-layers').innerText")
        assert "RPT-e8" in layers and "PO-3" in layers
    else:
        assert "at the average cost" in drill

    # a second figure: the warehouse's transfers out
    wh = next(i for i, ln in enumerate(report.lines) if (ln.sku, ln.location) == (SKU_A, WH))
    page.click(f'a.fig[data-line="{wh}"][data-flow="transfers_out"]')
    page.wait_for("document.getElementById('drill').innerText.indexOf('RPT-A at RPT-WH') >= 0")
    assert "RPT-e4" in page.evaluate("[...document.querySelectorAll('#drill tr.hit')].map(t => t.innerText).join(' ')")

    # the filter narrows the table
    page.evaluate("var f=document.getElementById('filter'); f.value='RPT-B'; f.dispatchEvent(new Event('input'))")
    assert page.evaluate("[...document.querySelectorAll('#valuation-table tbody tr')].filter(t => !t.hidden).length") == 1

    page.pump(0.5)
    assert page.errors == [], page.errors
    assert page.failed_requests == [], page.failed_requests
    assert page.evaluate("performance.getEntriesByType('resource').length") == 0, "the page must fetch nothing"
