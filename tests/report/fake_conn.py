"""A stand-in for a psycopg connection that answers ui_metadata's queries with canned rows, so the
drift and push pictures can be checked (and shown in the browser test) without live channel data."""

from __future__ import annotations

from decimal import Decimal as D


class _Result:
    def __init__(self, rows):
        self.rows = rows

    def fetchall(self):
        return self.rows

    def fetchone(self):
        return self.rows[0] if self.rows else None


class FakeConn:
    def __init__(self, answers: list[tuple[str, list[tuple]]]):
        self.answers = answers
        self.queries: list[str] = []

    def execute(self, query, params=None):
        text = str(query)
        self.queries.append(text)
        for needle, rows in self.answers:
            if needle in text:
                return _Result(rows)
        raise AssertionError(f"unexpected query: {text[:200]}")


def drift_conn() -> FakeConn:
    return FakeConn([
        ("date_trunc", [("01-07 09:00", "lag", 4), ("01-07 09:00", "uom", 1), ("01-07 10:00", "missed_event", 2),
                        ("01-07 11:00", "unexplained", 1), ("01-07 11:00", "lag", 2)]),
        ("from marts.fct_channel_drift group by", [
            ("shopify", "lag", 6, D("9"), D("54.00"), D(300)),
            ("shopify", "none", 120, D(0), D(0), D(0)),
            ("shopify", "uom", 1, D("11"), D("66.50"), D(7200)),
            ("square", "missed_event", 2, D("3"), D("18.25"), D(1800)),
            ("square", "unexplained", 1, D("40"), D("1234.5"), D(86400)),
            ("square", "none", 80, D(0), D(0), D(0)),
        ]),
    ])


def push_conn() -> FakeConn:
    return FakeConn([
        ("from ops.corrections", [("applied", "missed_event", 5), ("needs_review", "uom", 2),
                                  ("planned", "unexplained", 1), ("failed", "missed_event", 1)]),
        ("from ops.sync_log", [("applied", 5), ("stale", 1)]),
    ])
