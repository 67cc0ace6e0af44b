"""ShipHero's inventory snapshot in the client, against scripted answers: both file layouts, the status
spellings, the token never sent to the pre-signed URL, clear errors, and the fallback to paging."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import httpx
import pytest

from orchestration.lib.channels import ShipHeroClient
from orchestration.lib.channels.shiphero import SnapshotError
from tests.unit.channels.channel_fakes import CANARY, Script, reply

URL = "https://shiphero-snapshots.s3.amazonaws.com/snap/S1.json?X-Amz-Expires=86400&X-Amz-Signature=feedface99"
LEVEL = {"warehouse_id": "W", "on_hand": 7, "allocated": 2, "backorder": 0, "available": 5, "reserve": 1,
         "non_sellable": 0, "item_bins": {}}


def product(sku, **level):
    return {"sku": sku, "account_id": "QWNjb3VudDox", "vendors": {},
            "warehouse_products": {"W": {**LEVEL, **level}}}


NEW_FORMAT = {"snapshot_id": "S1", "warehouse_id": "W", "snapshot_started_at": "2026-01-10T12:00:00",
              "products": {"QWNjb3VudDox": {"A": product("A"), "B": product("B", on_hand=0, available=0)}}}
LEGACY = {"snapshot_id": "S1", "warehouse_id": "W", "snapshot_started_at": "2026-01-10T12:00:00+00:00",
          "products": {"A": product("A"), "B": product("B", on_hand=0, available=0)}}


def job(status, url=None, error=None):
    return {"snapshot_id": "S1", "warehouse_id": "W", "status": status, "error": error,
            "created_at": "2026-01-10T11:59:58+00:00", "snapshot_url": url}


def wrapped(root, snapshot, complexity=1):
    return reply(200, {"data": {root: {"request_id": "r", "complexity": complexity, "snapshot": snapshot}}})


def products_page(nodes):
    return reply(200, {"data": {"warehouse_products": {"request_id": "r", "complexity": 101, "data": {
        "pageInfo": {"hasNextPage": False, "endCursor": None}, "edges": [{"node": n} for n in nodes]}}}})


class Flow:
    """Scripted ShipHero: the job's statuses in turn, then the file (or a download error)."""

    def __init__(self, statuses, file=NEW_FORMAT, download=None):
        self.statuses, self.file, self.download = list(statuses), file, download

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "sh.example.com":
            return self.download or reply(200, self.file)
        query = json.loads(request.content)["query"]
        if "inventory_generate_snapshot" in query:
            return wrapped("inventory_generate_snapshot", job("InventorySnapshotStatus.enqueued"), 30)
        if "inventory_abort_snapshot" in query:
            return wrapped("inventory_abort_snapshot", job("aborted"), 5)
        if "inventory_snapshot" in query:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return wrapped("inventory_snapshot", job(status, URL if status == "success" else None,
                                                     "worker died" if status == "error" else None))
        return products_page([{"sku": "A", "warehouse_id": "W", "on_hand": 7, "updated_at": "2026-01-09T00:00:00"}])


def client(script, sleeps, **kw):
    return ShipHeroClient("https://sh.example.com", CANARY, warehouse_ids=["W"], transport=script.transport,
                          sleep=sleeps, **kw)


@pytest.mark.parametrize("document", [NEW_FORMAT, LEGACY], ids=["new_format", "legacy"])
def test_first_read_takes_the_snapshot_and_keeps_the_warehouse_products_shape(sleeps, document):
    script = Script(Flow(["enqueued", "processing", "success"], file=document))
    records = list(client(script, sleeps).read_levels())
    at = datetime(2026, 1, 10, 12, tzinfo=UTC)
    assert [(r.source_id, r.cursor_at) for r in records] == [("A|W|snapshot:S1", at), ("B|W|snapshot:S1", at)]
    assert {k: records[0].payload[k] for k in ("sku", "warehouse_id", "on_hand", "available", "allocated",
                                               "non_sellable_quantity", "reserve_inventory")} == {
        "sku": "A", "warehouse_id": "W", "on_hand": 7, "available": 5, "allocated": 2,
        "non_sellable_quantity": 0, "reserve_inventory": 1}
    generate = script.bodies()[0]
    assert generate["variables"]["data"] == {"warehouse_id": "W", "new_format": True}
    assert sleeps == [1.0, 1.5]  # polled with backoff until success
    assert not any("warehouse_products" in (b or {}).get("query", "") for b in script.bodies()[1:] if b)


def test_the_presigned_url_never_gets_the_token_and_its_signature_stays_out_of_logs(sleeps, caplog):
    script = Script(Flow(["success"], download=reply(403, raw=b"<Error><Code>AccessDenied</Code></Error>")))
    with caplog.at_level(logging.DEBUG):
        records = list(client(script, sleeps).read_levels())
    download = next(r for r in script.requests if r.url.host != "sh.example.com")
    assert "authorization" not in download.headers and download.url.params["X-Amz-Signature"] == "feedface99"
    assert [r.source_id for r in records] == ["A|W|2026-01-09T00:00:00"]  # fell back to paging
    assert "expired" in caplog.text and "feedface99" not in caplog.text and CANARY not in caplog.text


@pytest.mark.parametrize(("status", "message"), [(403, "has expired"), (404, "does not exist")])
def test_an_expired_or_missing_file_is_a_clear_error(sleeps, status, message):
    script = Script(Flow(["success"], download=reply(status, raw=b"<Error/>")))
    with pytest.raises(SnapshotError) as info:
        client(script, sleeps).download_snapshot(URL, "S1")
    assert message in str(info.value) and info.value.status == status and "feedface99" not in str(info.value)


def test_a_failed_job_falls_back_to_paging(sleeps, caplog):
    script = Script(Flow(["processing", "error"]))
    with caplog.at_level(logging.WARNING):
        records = list(client(script, sleeps).read_levels())
    assert [r.source_id for r in records] == ["A|W|2026-01-09T00:00:00"]
    assert "ended error: worker died" in caplog.text and "page by page" in caplog.text


def test_a_job_that_outlasts_the_timeout_is_aborted_and_paging_takes_over(sleeps):
    script = Script(Flow(["processing"]))
    records = list(client(script, sleeps, snapshot_timeout=10).read_levels())
    assert sum(sleeps) == pytest.approx(10)  # waited exactly the timeout (recording sleep: no real time)
    assert any("inventory_abort_snapshot" in b["query"] for b in script.bodies() if b)
    assert [r.source_id for r in records] == ["A|W|2026-01-09T00:00:00"]


def test_a_malformed_file_falls_back_and_a_since_read_never_snapshots(sleeps):
    bad = {"snapshot_started_at": "2026-01-10T12:00:00", "products": {"A": ["not", "an", "object"]}}
    script = Script(Flow(["success"], file=bad))
    assert [r.source_id for r in client(script, sleeps).read_levels()] == ["A|W|2026-01-09T00:00:00"]
    script = Script(Flow(["success"]))
    list(client(script, sleeps).read_levels(datetime(2026, 1, 9, tzinfo=UTC)))
    assert len(script.requests) == 1 and "warehouse_products" in script.bodies()[0]["query"]
    assert script.bodies()[0]["variables"]["updated_from"] == "2026-01-09T00:00:00Z"


def test_snapshot_levels_can_be_switched_off(sleeps):
    script = Script(Flow(["success"]))
    list(client(script, sleeps, snapshot_levels=False).read_levels())
    assert all("snapshot" not in b["query"] for b in script.bodies())
