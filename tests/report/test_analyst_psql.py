"""Analyst access (README): the URL `inventory-sync db url --role analyst` prints works with `psql`,
reads the marts, and can neither read raw data nor write."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def psql():
    path = shutil.which("psql")
    if path is None:
        pytest.skip("psql is not installed (Debian: apt-get install -y postgresql-client)")
    return path


def _psql(psql, url, sql):
    return subprocess.run([psql, url, "-X", "-A", "-t", "-F", ",", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, timeout=60)


def test_analyst_url_works_with_psql(seeded_valuation, psql, session_settings, capsys, monkeypatch):
    from orchestration.cli import main

    monkeypatch.setenv("INVENTORY_SYNC_HOME", str(session_settings.home))
    assert main(["db", "url", "--role", "analyst"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("postgresql://") and "_analyst:" in url

    out = _psql(psql, url, "select sku, location, inventory_value_fifo, inventory_value_avco "
                           "from marts.fct_stock_positions where sku like 'RPT-%' order by 1, 2")
    assert out.returncode == 0, out.stderr
    rows = [line.split(",") for line in out.stdout.strip().splitlines()]
    assert [r[:2] for r in rows] == [["RPT-A", "RPT-ST"], ["RPT-A", "RPT-WH"], ["RPT-B", "RPT-ST"]]

    lineage = _psql(psql, url, "select issue_event_id, source_event_id, quantity_base, unit_cost_base "
                               "from marts.fct_cost_of_goods where method = 'fifo' and issue_event_id = 'RPT-e3' "
                               "order by line_sequence")
    assert lineage.returncode == 0, lineage.stderr
    assert [r.split(",")[1] for r in lineage.stdout.split()] == ["RPT-e1", "RPT-e2"]

    denied = _psql(psql, url, "select count(*) from raw.file_movements")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    denied = _psql(psql, url, "delete from marts.fct_stock_positions")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
