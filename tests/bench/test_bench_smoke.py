"""The benchmark harness at toy size: every figure is there, a positive number or an explicit
`missing` marker, the generator is deterministic and valid, and the bench's own server is stopped."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

from orchestration.lib import benchgen
from orchestration.lib.bench import STAGES, python_valuation, run_bench
from orchestration.settings import Settings


def _positive_or_missing(figure: dict, *keys: str) -> None:
    if figure.get("missing"):
        assert figure.get("reason"), f"missing without a reason: {figure}"
        return
    for key in keys:
        value = figure.get(key)
        assert isinstance(value, int | float) and value > 0, f"{key} = {value!r} in {figure}"


def test_generator_is_deterministic_and_valid():
    shape = benchgen.Shape.build(movements=3000, locations=6, seed=3)
    rows = list(benchgen.movements(shape))
    assert len(rows) == 3000 and rows == list(benchgen.movements(shape))
    assert rows != list(benchgen.movements(benchgen.Shape.build(movements=3000, locations=6, seed=4)))
    assert len({r[0] for r in rows}) == len(rows)
    types = Counter(r[4] for r in rows)
    assert {"receipt", "sale", "transfer_out", "transfer_in", "customer_return", "physical_count"} <= set(types)
    assert types["transfer_out"] == types["transfer_in"]
    assert len({r[6] for r in rows}) >= 3  # several units
    ids = {r[0]: r for r in rows}
    for r in rows:
        if r[4] == "receipt":
            assert r[7] is not None
        if r[4] == "customer_return":
            assert ids[r[9]][4] == "sale" and ids[r[9]][2] == r[2]
        if r[4] == "vendor_return":
            assert ids[r[9]][4] == "receipt"
    # sorted per SKU, most issues come after the SKU's first receipt
    first = {}
    for r in sorted(rows, key=lambda r: r[1]):
        first.setdefault(r[2], r[4])
    assert set(first.values()) == {"receipt"}


def test_python_loop_values_a_simple_history():
    from decimal import Decimal as D

    rows = [("A", "L", "receipt", D(10), D(2), None, "1"), ("A", "L", "receipt", D(10), D(4), None, "2"),
            ("A", "L", "sale", D(-15), None, None, "3")]
    count, fifo, avco = python_valuation(rows)
    assert (count, fifo, avco) == (3, D(20), D(15))


def test_bench_smoke(tmp_path):
    lines: list[str] = []
    path = tmp_path / "bench.json"
    # The live loop (the demo retailer under live traffic, minutes) is measured by the demo test, not here.
    code = run_bench(Settings(home=tmp_path / "home"), 2000, str(path), out=lines.append, skip=frozenset({"live"}))
    assert code in (0, 1), "\n".join(lines)
    figures = json.loads(path.read_text())
    assert figures["movements"] == 2000
    assert isinstance(figures["peak_rss_mb"], int | float) and figures["peak_rss_mb"] > 0
    assert set(figures["stages"]) == set(STAGES)
    for name in STAGES:
        stage = figures["stages"][name]
        _positive_or_missing(stage, "seconds", "rows_per_second")
    assert figures["latency"]["missing"] and "skipped" in figures["latency"]["reason"]
    _positive_or_missing(figures["latency"]["simulated_at_bench_scale"], "p50_seconds", "p95_seconds")
    oversells = figures["oversells"]
    if not oversells.get("missing"):
        assert all(isinstance(oversells[k], int) and oversells[k] >= 0 for k in ("continuous", "batch_15min"))
    else:
        assert oversells["reason"]
    # the PL/pgSQL loop is python_loop in PL/pgSQL: both value the same ledger to the same totals
    # (Decimal and numeric may round a division differently: a cent apart at most)
    py, pl = figures["stages"]["python_loop"], figures["stages"]["plpgsql_loop"]
    assert not py.get("missing") and not pl.get("missing"), (py, pl)  # they need only the built ledger
    assert pl["rows"] == py["rows"] == figures["stages"]["dbt_build_full"]["ledger_rows"]
    for total in ("inventory_value_fifo", "inventory_value_avco"):
        assert abs(Decimal(pl[total]) - Decimal(py[total])) <= Decimal("0.01"), (total, pl[total], py[total])
    # the incremental cycle and a second one on top of it (resuming from checkpoints an incremental build wrote)
    # build everything and fail no data test
    cycle = figures["stages"]["incremental_cycle"]
    if not cycle.get("missing"):
        for build in (cycle, cycle["second_cycle"]):
            assert not build.get("missing"), build
            assert build["errors"] == build["test_failures"] == build["skipped"] == 0, build
            assert build["seconds"] > 0
    table = "\n".join(lines)
    for name in STAGES:
        assert name in table
    from orchestration.lib.warehouse import EmbeddedPostgres

    assert EmbeddedPostgres(tmp_path / "home" / "bench").info() is None, "the bench left its server running"
