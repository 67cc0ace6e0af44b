"""The demo's latency figures: every measured change, and those made after the first cycle (the steady state)."""

from orchestration.lib.demo import DemoState


def test_latency_figures_split_the_changes_made_after_the_first_cycle():
    state = DemoState(latencies=[float(x) for x in range(1, 101)], unconverged=2,
                      steady_latencies=[float(x) for x in range(1, 21)], steady_unconverged=1)
    figures = state.latency_figures()
    assert (figures["events"], figures["unconverged"]) == (100, 2)
    assert 50 <= figures["p50_seconds"] <= 51 and 95 <= figures["p95_seconds"] <= 96
    steady = figures["after_first_cycle"]
    assert (steady["events"], steady["unconverged"]) == (20, 1)
    assert 10 <= steady["p50_seconds"] <= 11 and 19 <= steady["p95_seconds"] <= 20


def test_no_changes_no_quantiles():
    figures = DemoState().latency_figures()
    assert figures["p50_seconds"] is None and figures["after_first_cycle"]["p95_seconds"] is None
