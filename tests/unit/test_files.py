"""The file channel parser: every row is accepted or quarantined with a reason, never raised (P-PARSE)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.lib.files import FileFormatError, SourceLayout, parse_csv

HEADER = "event_id,occurred_at,sku,location,movement_type,quantity,uom,unit_cost,currency,reference\n"


def one(line: str):
    return parse_csv("movements", HEADER + line + "\n")


def test_good_row_is_typed_exactly():
    res = one("E1,2026-01-01T09:00:00Z,SKU-1,WH,receipt,12.500,cs12,3.1415926535,usd,GRN-1")
    assert not res.rejected
    row = res.accepted[0]
    assert row["quantity"] == Decimal("12.500") and row["unit_cost"] == Decimal("3.1415926535")
    assert row["uom"] == "CS12" and row["currency"] == "USD" and row["occurred_at"].tzinfo is not None


@pytest.mark.parametrize(
    "line, reason",
    [
        ("E1,2026-01-01T09:00:00,S,L,sale,-1,EA,,,", "missing_timezone"),
        ("E1,2026-01-01T09:00:00Z,S,L,sale,NaN,EA,,,", "non_finite_number"),
        ("E1,2026-01-01T09:00:00Z,S,L,sale,-Infinity,EA,,,", "non_finite_number"),
        ("E1,2026-01-01T09:00:00Z,S,L,sale,1e309,EA,,,", "out_of_range"),
        ("E1,2026-01-01T09:00:00Z,S,L,sale,twelve,EA,,,", "not_a_number"),
        ("E1,2026-01-01T09:00:00Z,S,L,receipt,5,EA,,,", "missing_cost"),
        ("E1,2026-01-01T09:00:00Z,S,L,receipt,-5,EA,1,,", "negative_inbound_quantity"),
        ("E1,2026-01-01T09:00:00Z,S,L,sale,5,EA,,,", "positive_outbound_quantity"),
        ("E1,2026-01-01T09:00:00Z,S,L,teleport,5,EA,,,", "unknown_movement_type"),
        ("E1,2999-01-01T09:00:00Z,S,L,sale,-1,EA,,,", "future_timestamp"),
        ("E1,2026-01-01T09:00:00Z,,L,sale,-1,EA,,,", "missing_value"),
        ("E1,2026-01-01T09:00:00Z,S\x00X,L,sale,-1,EA,,,", "invalid_character"),
        ("E1,2026-01-01T09:00:00Z,S,L,receipt,1,EA,-2,,", "negative_cost"),
        ("E1,2026-01-01T09:00:00Z,S,L,sale,-1,EA,,dollars,", "bad_currency"),
        ("E1,2026-01-01T09:00:00Z,S,L,sale,-1,EA,,,,extra", "extra_columns"),
    ],
)
def test_bad_rows_are_quarantined_with_their_reason(line, reason):
    res = one(line)
    assert not res.accepted
    assert [r["reason"] for r in res.rejected] == [reason]


def test_sql_like_text_is_kept_verbatim():
    res = one("E1,2026-01-01T09:00:00Z,\"'; DROP TABLE raw.file_movements;--\",L,sale,-1,EA,,,$$x$$")
    assert res.accepted[0]["sku"] == "'; DROP TABLE raw.file_movements;--"
    assert res.accepted[0]["reference"] == "$$x$$"


def test_full_width_lookalikes_are_normalized():
    assert one("E1,2026-01-01T09:00:00Z,ＳＫＵ-1 ,L,sale,-1,EA,,,").accepted[0]["sku"] == "SKU-1"


def test_duplicate_ids_in_one_file():
    same = one("E1,2026-01-01T09:00:00Z,S,L,sale,-1,EA,,,\nE1,2026-01-01T09:00:00Z,S,L,sale,-1,EA,,,")
    assert len(same.accepted) == 1 and not same.rejected
    clash = one("E1,2026-01-01T09:00:00Z,S,L,sale,-1,EA,,,\nE1,2026-01-01T09:00:00Z,S,L,sale,-2,EA,,,")
    assert len(clash.accepted) == 1 and [r["reason"] for r in clash.rejected] == ["conflicting_duplicate"]


def test_missing_columns_reject_the_whole_file():
    with pytest.raises(FileFormatError, match="missing column\\(s\\) quantity"):
        parse_csv("movements", "event_id,occurred_at,sku,location,movement_type,uom\n")
    with pytest.raises(FileFormatError, match="empty"):
        parse_csv("skus", "")


def test_source_layout_maps_columns_and_values():
    layout = SourceLayout(
        name="pos",
        columns={"event_id": "Txn", "occurred_at": "When", "sku": "Item", "location": "Store",
                 "movement_type": "Type", "quantity": "Qty", "uom": "Unit"},
        values={"movement_type": {"Sold": "sale", "Count": "physical_count"}},
        negate_outbound=True,
        timestamp_format="%d/%m/%Y %H:%M",
        timezone="Europe/London",
    )
    res = parse_csv("movements", "Txn,When,Item,Store,Type,Qty,Unit\nT1,02/07/2026 10:30,S,L,Sold,3,EA\n", source="pos", layout=layout)
    assert not res.rejected, res.rejected
    row = res.accepted[0]
    assert row["movement_type"] == "sale" and row["quantity"] == Decimal(-3) and row["source"] == "pos"
    assert row["occurred_at"].utcoffset().total_seconds() == 3600  # BST


cells = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["NaN", "Infinity", "-1e309", "1" * 5000, "0.000001", "-3", "2026-01-01T00:00:00Z", "receipt", "sale", "EA"]),
)


@given(st.lists(st.lists(cells, min_size=10, max_size=11), max_size=8))
def test_parser_is_total(rows):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    for r in rows:
        w.writerow(r)
    res = parse_csv("movements", HEADER + buf.getvalue())
    assert len(res.accepted) + len(res.rejected) <= len(rows) + buf.getvalue().count("\r")  # nothing invented
    for row in res.accepted:
        assert row["quantity"].is_finite() and abs(row["quantity"]) < Decimal("1e12")
        assert row["occurred_at"].tzinfo is not None


def test_policy_in_flight_seconds_is_optional_and_not_negative():
    header = "channel,safety_buffer,percentage,maximum,minimum,conflict_rule,in_flight_seconds\n"
    res = parse_csv("policies", header + "amazon,3,80,100,,master_wins,30\nshopify,2,,,,,\nebay,1,,,,,-5\n")
    assert {r["channel"]: r["in_flight_seconds"] for r in res.accepted} == {"amazon": Decimal(30), "shopify": None}
    assert [r["reason"] for r in res.rejected] == ["out_of_range"]
    # Files written before the column existed still load.
    old = parse_csv("policies", "channel,safety_buffer\namazon,3\n")
    assert old.accepted[0]["in_flight_seconds"] is None and not old.rejected
