"""Hand-made histories for the incremental (resume-from-checkpoint) valuation test: each is one SKU's
early history plus the batches that arrive later, built so that, with a checkpoint every 3 positions,
every way a later batch can meet a checkpoint is exercised (see test_incremental_resume_equals_full_refresh).

A batch is a list of canonical file rows (as in valuation_harness.history, without `sku`), or a dict
{"rows": [...], "update": {event_id: new quantity}, "delete": [event_id, ...]} that also changes or
removes rows already loaded.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from tests.valuation.valuation_harness import T0


def mv(eid, minute, kind, qty, loc="VAL-A", cost=None, ref=None, source="erp", uom="EA") -> dict:
    return dict(
        source=source,
        event_id=eid,
        occurred_at=T0 + timedelta(minutes=minute),
        location=loc,
        uom=uom,
        unit_cost=None if cost is None else Decimal(cost),
        currency="EUR",
        reference=ref,
        movement_type=kind,
        quantity=Decimal(qty),
    )


def _trading(prefix: str, start: int, n: int, loc: str = "VAL-A") -> list[dict]:
    """n rows from minute `start`: receipts at changing costs, sales, an adjustment without cost, damage."""
    rows = []
    for k in range(n):
        m = start + k
        eid = f"{prefix}{k}"
        shape = k % 5
        if shape == 0:
            rows.append(mv(eid, m, "receipt", 6 + k % 4, loc, cost=f"{3 + k % 7}.{k % 10}5", ref=f"PO-{eid}"))
        elif shape == 4:
            rows.append(mv(eid, m, "adjustment", 1, loc))
        elif shape == 3 and k % 2:
            rows.append(mv(eid, m, "damage", -1, loc, uom="HALF"))
        else:
            rows.append(mv(eid, m, "sale", -(1 + k % 3), loc, uom="CS6" if k % 7 == 0 else "EA"))
    return rows


ROUNDS = 4


def scenarios() -> dict[str, tuple[list[dict], list]]:
    """name -> (early rows, [batch 1, ..., batch ROUNDS])."""
    s: dict[str, tuple[list[dict], list]] = {}

    # (a) every new event after the history: resume from the end checkpoint
    s["after_history"] = (
        [mv("r0", 0, "receipt", 10, cost="5"), *_trading("t", 1, 11)],
        [
            [mv("n1", 20, "sale", -2), mv("n2", 21, "receipt", 8, cost="6.25", ref="PO-n2"), mv("n3", 22, "sale", -3)],
            [mv("n4", 30, "sale", -1, uom="HALF")],
            [mv("n5", 40, "adjustment", 3), mv("n6", 41, "physical_count", 7, cost="4")],
        ],
    )

    # (b) back-dated into the middle (ties on a minute, ordered by event_id), then after, then both
    s["back_dated"] = (
        [mv("r0", 0, "receipt", 10, cost="5"), *_trading("t", 1, 14)],
        [
            [mv("b1", 6, "sale", -2), mv("a0", 4, "receipt", 3, cost="9.10", ref="PO-a0")],
            [mv("b2", 30, "sale", -1), mv("b3", 12, "damage", -1)],
            [mv("b4", 2, "sale", -1, loc="VAL-B"), mv("b5", 31, "receipt", 2, cost="1.3333")],
        ],
    )

    # (c) returns in a later batch referencing a sale / receipt far before the checkpoint; a return of a
    # source without that sale takes the other source's; then that source's own sale arrives after its
    # return (which then is unreferenced: the checkpoints after the return cannot be resumed from), alone in
    # its batch, so that the first change comes after those checkpoints
    s["returns_far_back"] = (
        [
            mv("r1", 0, "receipt", 10, cost="5", ref="PO-1"),
            mv("s1", 1, "sale", -4),
            mv("r2", 2, "receipt", 10, cost="7.77", ref="PO-2"),
            *_trading("t", 3, 12, loc="VAL-B"),
        ],
        [
            [
                mv("c1", 20, "customer_return", 2, ref="s1"),
                mv("v1", 21, "vendor_return", -3, ref="r1"),
                mv("c2", 22, "customer_return", 1, ref="s1", source="wms"),
                mv("c3", 23, "customer_return", 1, ref="s-missing"),
            ],
            [mv("s1", 30, "sale", -1, source="wms")],
            [mv("v2", 40, "vendor_return", -2, ref="r2"), mv("c5", 41, "customer_return", 1, ref="s1"),
             mv("c4", 42, "customer_return", 1, ref="s1", source="wms")],
        ],
    )

    # (d) transfers whose pair straddles the checkpoint: sent in the history, received later (in full and
    # short, then the rest); received back-dated before it was sent (valued after its pair); received
    # before any transfer_out, whose transfer_out then arrives (the receipt moves after it)
    s["transfers"] = (
        [
            mv("r1", 0, "receipt", 20, cost="3", ref="PO-1"),
            mv("r2", 1, "receipt", 10, cost="4.5", ref="PO-2"),
            mv("o1", 2, "transfer_out", -6, ref="T1"),
            mv("o4", 3, "transfer_out", -4, ref="T4"),
            *_trading("t", 4, 7),
        ],
        [
            [mv("i1", 20, "transfer_in", 6, loc="VAL-B", ref="T1"), mv("i4", 21, "transfer_in", 2, loc="VAL-C", ref="T4"),
             mv("o2", 22, "transfer_out", -5, ref="T2")],
            [mv("i2", 5, "transfer_in", 5, loc="VAL-C", ref="T2"), mv("i3", 6, "transfer_in", 2, loc="VAL-B", ref="T3"),
             mv("i5", 30, "transfer_in", 2, loc="VAL-C", ref="T4")],
            [mv("o3", 31, "transfer_out", -2, loc="VAL-A", ref="T3"), mv("x1", 32, "sale", -1, loc="VAL-C")],
        ],
    )

    # (e) negative stock open at the checkpoint, settled by a later receipt (revaluation), at two locations
    s["negative_stock"] = (
        [
            mv("r1", 0, "receipt", 5, cost="5", ref="PO-1"),
            mv("s1", 1, "sale", -8),
            mv("rb", 2, "receipt", 4, loc="VAL-B", cost="2.5", ref="PO-b"),
            mv("sb", 3, "sale", -6, loc="VAL-B"),
            *_trading("t", 4, 8, loc="VAL-C"),
        ],
        [
            [mv("r2", 20, "receipt", 4, cost="6", ref="PO-2"), mv("ab", 21, "adjustment", 1, loc="VAL-B")],
            [mv("s2", 30, "sale", -5), mv("ib", 31, "adjustment", 5, loc="VAL-B", cost="3.3")],
            [mv("r3", 40, "receipt", 9, cost="6.6", ref="PO-3")],
        ],
    )

    # (g) a transfer received in full in the history, then once more after it (its pool, empty, is in no
    # checkpoint's state)
    s["transfer_received_twice"] = (
        [
            mv("r1", 0, "receipt", 12, cost="2.5", ref="PO-1"),
            mv("o1", 1, "transfer_out", -5, ref="T1"),
            mv("i1", 2, "transfer_in", 5, loc="VAL-B", ref="T1"),
            *_trading("t", 3, 8),
        ],
        [
            [mv("i2", 30, "transfer_in", 1, loc="VAL-B", ref="T1")],
            [mv("x1", 31, "sale", -1, loc="VAL-B")],
        ],
    )

    # (h) a checkpoint right after a transfer_out whose transfer_in, stamped earlier, is valued after it (at its
    # pair's place): a change just after the transfer_out resumes from that checkpoint, and the transfer_in,
    # before it by its own time, is among the rows to value again
    s["received_before_sent_at_checkpoint"] = (
        [
            mv("r1", 0, "receipt", 12, cost="2.5", ref="PO-1"),
            mv("s1", 1, "sale", -1),
            mv("o1", 10, "transfer_out", -5, ref="T1"),
            mv("i1", 5, "transfer_in", 5, loc="VAL-B", ref="T1"),
            *_trading("t", 11, 8),
        ],
        [
            [mv("n1", 10.5, "sale", -1)],
            [mv("n2", 30, "sale", -1, loc="VAL-B")],
        ],
    )

    # (f) old rows changed and removed (nothing before them may be trusted after them): falls back to a
    # checkpoint before them, or the start. Only in the last batch: a raw row updated or deleted makes the ledger
    # map everything again, and the valuation fingerprint every SKU (batches of new rows alone take the
    # changes-only path)
    s["changed_old_rows"] = (
        [mv("r0", 0, "receipt", 10, cost="5"), *_trading("t", 1, 14)],
        [
            [mv("f1", 20, "sale", -1)],
            [mv("f2", 30, "sale", -1)],
            [],
            {"rows": [mv("f3", 35, "sale", -1)], "update": {"t6": Decimal(-2)}, "delete": ["t9", "t1"]},
        ],
    )
    for _, batches in s.values():
        batches.extend([] for _ in range(ROUNDS - len(batches)))
    return s
