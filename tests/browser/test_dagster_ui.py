"""`inventory-sync dev` serves a Dagster UI that loads this project: the asset graph, an asset check
result and the metadata of orchestration/lib/ui_metadata.py (markdown tables, charts as data: images)
render without any error in the page. Screenshots are saved in the test's tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orchestration.settings import PROJECT_ROOT
from tests.report.seed import seed

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# Text the Dagster UI shows when something is broken (a failed code location, a GraphQL or Python error).
ERROR_MARKERS = ("PythonError", "Something went wrong", "Error loading", "Unexpected error", "Failed to load",
                 "DagsterInvalidDefinitionError", "Traceback", "Could not load", "An error occurred")
SKIP_ONBOARDING = """(function(){var b=[...document.querySelectorAll('button')].find(x=>x.innerText.trim()==='Skip');
  if(b){b.click(); return true;} return false;})()"""
WORKSPACE = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } }
  assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the local Dagster webserver
        return json.load(resp)["data"]


def _wait_for_ui(port: int, proc: subprocess.Popen, log: Path, timeout: float = 240) -> dict:
    """Until the webserver answers and the code location has loaded; its assets and checks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"inventory-sync dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            data = _graphql(port, WORKSPACE)
        except (OSError, ValueError, KeyError):
            time.sleep(1)
            continue
        entries = data["workspaceOrError"]["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e["locationOrLoadError"] for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, f"the code location failed to load: {errors}"
            return data
        time.sleep(1)
    raise AssertionError(f"the Dagster UI was not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def seeded(warehouse, load_file_rows, dbt):
    seed(warehouse, load_file_rows, dbt)
    return warehouse


@pytest.fixture
def dagster_dev(seeded, runtime_env, tmp_path):
    """`inventory-sync dev` on a free port against the session's (seeded) warehouse and Dagster home.
    Seeded first: a dbt build rewrites target/manifest.json, which the code location reads at load."""
    port = _free_port()
    log = tmp_path / "dagster-dev.log"
    exe = Path(sys.executable).with_name("inventory-sync")
    with log.open("w") as out:
        proc = subprocess.Popen([str(exe), "dev", "--port", str(port)], cwd=PROJECT_ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **runtime_env}, start_new_session=True)
    try:
        yield port, _wait_for_ui(port, proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # dagster dev shuts its daemon and code servers down on ^C
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _open(page, url: str, expect: str | tuple[str, ...], shot: Path, timeout: float = 90) -> str:
    """Open `url`, wait until the page shows `expect` (or any of several), screenshot it to `shot` (also
    when it never does, for the failure report)."""
    page.navigate(url)
    wanted = (expect,) if isinstance(expect, str) else expect
    try:
        page.wait_for(" || ".join(f"(document.body && document.body.innerText.indexOf({json.dumps(w)}) >= 0)"
                                  for w in wanted), timeout=timeout, what=f"{' or '.join(map(repr, wanted))} on {url}")
    except TimeoutError:
        with contextlib.suppress(Exception):
            page.screenshot(shot)
        raise
    page.pump(1.5)
    _dismiss_onboarding(page)
    page.screenshot(shot)
    text = page.text()
    shown = [m for m in ERROR_MARKERS if m in text]
    assert not shown, f"{url} shows an error ({shown}); screenshot {shot}:\n{text[:2000]}"
    return text


def _dismiss_onboarding(page) -> None:
    """The UI greets a new browser profile with a 'Join the Dagster community' dialog: skip it."""
    for _ in range(6):
        if page.evaluate(SKIP_ONBOARDING):
            page.pump(0.5)
            return
        page.pump(0.5)


def _markdown(page, label: str) -> str:
    """The rendered markdown of the metadata entry `label` on an events page: a CSS selector for it.
    Short markdown renders in the table row; longer is behind '[Show Markdown]', a dialog."""
    where = page.evaluate(f"""(function(){{
      var rows=[...document.querySelectorAll('tr')].filter(tr => tr.cells.length > 1 &&
              tr.cells[0].innerText.trim() === {json.dumps(label)});
      if(!rows.length){{return null;}}
      rows[0].setAttribute('data-entry', {json.dumps(label)});
      var link=[...rows[0].querySelectorAll('a')].find(x => x.innerText.trim() === '[Show Markdown]');
      if(!link){{return 'inline';}}
      link.click(); return 'dialog';}})()""")
    assert where, f"no metadata entry {label!r} on the page"
    if where == "dialog":
        page.wait_for("!!document.querySelector('[role=dialog] .dagster-markdown')", what=f"the {label} dialog")
        return "[role=dialog] .dagster-markdown"
    return f"tr[data-entry={json.dumps(label)}] .dagster-markdown"


def test_dagster_ui_graph_check_and_metadata(chromium_path, warehouse, session_settings, runtime_env, dagster_dev,
                                             page, tmp_path, monkeypatch):
    import dagster as dg

    from orchestration.lib import ui_metadata
    from tests.report.fake_conn import drift_conn, push_conn

    port, workspace = dagster_dev
    base = f"http://127.0.0.1:{port}"
    keys = {"/".join(n["assetKey"]["path"]): [c["name"] for c in (n["assetChecksOrError"].get("checks") or [])]
            for n in workspace["assetNodes"]}
    assert "marts/fct_stock_positions" in keys and "marts/fct_channel_drift" in keys
    check_asset = "marts/fct_stock_positions" if keys["marts/fct_stock_positions"] else next(k for k, c in keys.items() if c)
    check_name = keys[check_asset][0]
    push_asset = next((k for k in keys if k.startswith("push/")), None)

    # What the wired assets will attach, reported to the instance the UI reads (dagster.yaml reads its URL
    # from the environment).
    for name, value in runtime_env.items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(session_settings.dagster_home))
    with warehouse.connect("pusher") as conn:
        events = {
            "marts/fct_stock_positions": ui_metadata.relation_metadata(conn, "marts", "fct_stock_positions"),
            # the test warehouse has no channel snapshots: canned drift rows show the table and the chart
            "marts/fct_channel_drift": {**ui_metadata.relation_metadata(conn, "marts", "fct_channel_drift"),
                                        **ui_metadata.drift_metadata(drift_conn())},
            "marts/fct_stock_movements": {**ui_metadata.relation_metadata(conn, "marts", "fct_stock_movements"),
                                          **ui_metadata.mart_row_counts(conn)},
        }
        if push_asset:
            events[push_asset] = ui_metadata.push_metadata(push_conn(), push_asset.split("/")[1])
    for key, metadata in events.items():
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key.split("/"), metadata=metadata))
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(check_asset.split("/")), check_name=check_name, passed=True,
        metadata={"checked_by": "tests/browser"}))

    # The asset graph
    text = _open(page, f"{base}/asset-groups", "Global asset lineage", tmp_path / "asset-graph.png")
    assert all(group in text for group in ("extract", "staging", "intermediate", "marts", "sync")), text[:1500]
    # One group's lineage, with its assets drawn (the page draws only the part of the graph in view, and
    # which marts those are depends on the layout: wait for any, then check several are there)
    marts = ("fct_channel_drift", "fct_stock_positions", "fct_inventory_valuation", "fct_cost_layers",
             "fct_cost_of_goods", "fct_stock_movements", "dim_skus", "dim_locations", "dim_channels",
             "sync_shopify__stock_corrections", "sync_square__stock_corrections")
    text = _open(page, f"{base}/locations/inventory_sync/asset-groups/marts", marts, tmp_path / "marts-lineage.png")
    assert sum(name in text for name in marts) >= 3, text[:2000]

    # The asset check result
    text = _open(page, f"{base}/assets/{check_asset}?view=checks", check_name[:40], tmp_path / "checks.png")
    page.evaluate(f"""(function(){{var e=[...document.querySelectorAll('a,button,div,span')]
        .filter(x => x.children.length === 0 && x.innerText.trim() === {json.dumps(check_name)})[0];
        if(e){{e.click();}}}})()""")
    page.wait_for("/Succeeded|Passed/.test(document.body.innerText)", what="a passed check evaluation")
    page.pump(1)
    page.screenshot(tmp_path / "check-result.png")
    assert not [m for m in ERROR_MARKERS if m in page.text()]

    # Metadata: stock value (markdown table) and value by location (a chart as a data: image)
    text = _open(page, f"{base}/assets/marts/fct_stock_positions?view=events", "inventory_value_fifo",
                 tmp_path / "positions-metadata.png")
    assert "dagster/row_count" in text and "stock_value" in text and "value_by_location" in text
    scope = _markdown(page, "value_by_location")
    page.wait_for(f"[...document.querySelectorAll({json.dumps(scope + ' img')})].some(i => i.complete && i.naturalWidth > 100)",
                  what="the value-by-location chart to render")
    page.pump(1)
    page.screenshot(tmp_path / "value-by-location.png")

    # Drift by channel and class
    text = _open(page, f"{base}/assets/marts/fct_channel_drift?view=events", "drift_by_channel_and_class",
                 tmp_path / "drift-metadata.png")
    assert "drift_rows/unexplained" in text
    scope = _markdown(page, "drift_by_channel_and_class")
    page.wait_for(f"document.querySelector({json.dumps(scope)}).innerText.indexOf('Drift by channel') >= 0",
                  what="the drift table")
    assert "| square | unexplained |" not in page.evaluate(f"document.querySelector({json.dumps(scope)}).innerText")
    assert "unexplained" in page.evaluate(f"document.querySelector({json.dumps(scope)}).innerText")
    page.screenshot(tmp_path / "drift-table.png")
    page.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27})
    scope = _markdown(page, "drift_over_time")
    page.wait_for(f"[...document.querySelectorAll({json.dumps(scope + ' img')})].some(i => i.complete && i.naturalWidth > 100)",
                  what="the drift-over-time chart to render")
    page.pump(1)  # the dialog fades in
    page.screenshot(tmp_path / "drift-over-time.png")

    if push_asset:
        text = _open(page, f"{base}/assets/{push_asset}?view=events", "corrections_pushed", tmp_path / "push-metadata.png")
        assert "corrections_queued" in text

    page.pump(0.5)
    assert page.errors == [], page.errors
