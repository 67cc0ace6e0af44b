"""orchestration.lib.ui_metadata: what the Dagster UI shows for the marts and the push assets."""

from __future__ import annotations

import base64
from decimal import Decimal

import dagster as dg
import pytest

from orchestration.lib import ui_metadata as ui
from tests.report.fake_conn import drift_conn, push_conn


def _svg(md: str) -> str:
    assert md.startswith("![") and "(data:image/svg+xml;base64," in md
    return base64.b64decode(md.split("base64,", 1)[1].rstrip(")")).decode()


def test_drift_by_channel_and_class():
    meta = ui.drift_metadata(drift_conn())
    md = meta["drift_by_channel_and_class"].value
    assert "| channel | class | rows | units off | value off | longest |" in md
    assert "| square | unexplained | 1 | 40 | 1,234.50 | 1,440 min |" in md
    assert "| shopify | lag | 6 | 9 | 54.00 | 5 min |" in md
    assert "| none |" not in md and "shopify: 120 in sync" in md
    assert meta["drift_rows/lag"].value == 6 and meta["drift_rows/unexplained"].value == 1
    assert meta["drift_value_abs"].value == pytest.approx(1373.25)
    svg = _svg(meta["drift_over_time"].value)
    assert svg.startswith("<svg") and "01-07 11:00" in svg and "unexplained" in svg


def test_push_counts():
    meta = ui.push_metadata(push_conn(), "square")
    assert meta["corrections_pushed"].value == 5
    assert meta["corrections_queued"].value == 3
    assert meta["corrections_needs_review"].value == 2
    assert meta["corrections_failed"].value == 1
    md = meta["corrections"].value
    assert "5 pushed, 3 queued (2 waiting for review" in md and "applied 5, stale 1" in md


def test_markdown_table_escapes_pipes():
    assert ui.markdown_table(["a"], [["x|y"]]) == "| a |\n|:--|\n| x\\|y |"


@pytest.mark.integration
def test_marts_metadata_from_the_warehouse(seeded_valuation):
    with seeded_valuation.connect("pusher") as conn:
        meta = ui.relation_metadata(conn, "marts", "fct_stock_positions")
        counts = ui.mart_row_counts(conn)
        drift = ui.relation_metadata(conn, "marts", "fct_channel_drift")  # the real SQL, whatever the rows
        # The session warehouse holds other tests' SKUs too (some with negative value): the EUR total is
        # checked against the positions of every SKU whose movements are mostly in EUR (ties: the first
        # currency by name), computed here row by row.
        counts_by_sku: dict[str, dict[str, int]] = {}
        for sku, currency, n in conn.execute("select sku, currency, count(*) from marts.fct_stock_movements "
                                             "where currency is not null group by 1, 2"):
            counts_by_sku.setdefault(sku, {})[currency] = n
        currency_of = {sku: min(c, key=lambda cur: (-c[cur], cur)) for sku, c in counts_by_sku.items()}
        fifo = avco = Decimal(0)
        for sku, f, a in conn.execute("select sku, inventory_value_fifo, inventory_value_avco "
                                      "from marts.fct_stock_positions"):
            if currency_of.get(sku) == "EUR":
                fifo, avco = fifo + (f or 0), avco + (a or 0)
        rpt = conn.execute("select count(*) from marts.fct_stock_positions where sku like 'RPT-%'").fetchone()[0]
        rows = conn.execute("select count(*) from marts.fct_stock_positions").fetchone()[0]
    assert meta["dagster/row_count"].value == rows
    assert rpt > 0 and all(currency_of[sku] == "EUR" for sku in currency_of if sku.startswith("RPT-"))
    assert meta["inventory_value_fifo/EUR"].value == pytest.approx(float(fifo), abs=0.005)
    assert meta["inventory_value_avco/EUR"].value == pytest.approx(float(avco), abs=0.005)
    assert "RPT-WH" in meta["stock_value"].value and "FIFO − AVCO" in meta["stock_value"].value
    assert "RPT-ST" in _svg(meta["value_by_location"].value)
    assert counts["rows/fct_stock_positions"].value == rows
    assert "Drift by channel and class" in drift["drift_by_channel_and_class"].value
    assert "marts.fct_cost_layers" in counts["row_counts"].value
    for value in (*meta.values(), *counts.values()):
        assert isinstance(value, dg.MetadataValue)
