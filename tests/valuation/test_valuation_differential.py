"""I-8: the dbt valuation (FIFO and AVCO) equals the independent Python reference on generated histories.

Hypothesis generates the histories; all of them are loaded as distinct SKUs and valued by ONE
`dbt build`, then every valued movement, cost-of-goods line and open layer is compared with the
reference by exact `Decimal` equality on the unrounded `numeric` values (no tolerance, not even a cent).
The dbt unit tests of the valuation pass run in their own test below.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from tests.valuation.valuation_harness import VALUATION_BUILD, compare, history, load_histories

pytestmark = pytest.mark.integration

# The builds here check the valuation against the reference; its dbt unit tests run separately.
BUILD = ("build", "--select", *VALUATION_BUILD, "--exclude", "test_type:unit")


def _collect(n_examples: int | None = None) -> list[list[dict]]:
    """Run Hypothesis to collect histories; no database work per example (they are built together)."""
    collected: list[list[dict]] = []

    @given(history())
    def collect(rows):
        collected.append(rows)

    if n_examples is not None:
        collect = settings(max_examples=n_examples)(collect)
    collect()
    return collected


def _report(problems: list[str]) -> str:
    return f"{len(problems)} differences, first ones:\n" + "\n".join(problems[:40])


def test_marts_equal_reference(warehouse, dbt, load_file_rows):
    histories = _collect()
    skus = load_histories(load_file_rows, histories)
    dbt(*BUILD)
    with warehouse.connect("transformer") as conn:
        problems = compare(conn, skus[0].rsplit("-", 1)[0])
    assert not problems, _report(problems)


def test_back_dated_events_revalue_everything_after_them(warehouse, dbt, load_file_rows):
    """Events that arrive in a later batch, many of them back-dated before already valued ones, give
    exactly what valuing the whole history at once gives (rule 2)."""
    histories = _collect(20)
    early = [rows[: len(rows) // 2] for rows in histories]
    late = [rows[len(rows) // 2 :] for rows in histories]
    skus = load_histories(load_file_rows, early)
    prefix = skus[0].rsplit("-", 1)[0]
    dbt(*BUILD)
    load_histories(load_file_rows, late, prefix=prefix)
    dbt(*BUILD)
    with warehouse.connect("transformer") as conn:
        problems = compare(conn, prefix)
    assert not problems, _report(problems)


def _can_create_temporary_tables(warehouse) -> bool:
    with warehouse.connect("transformer") as conn:
        return conn.execute("select has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0]


def test_incremental_build_equals_full_refresh(warehouse, dbt, load_file_rows):
    """With var valuation_incremental, a build after a batch of late (back-dated) events re-values only
    the SKUs it touches, whole history, and gives exactly what a full refresh (and the reference) gives."""
    if not _can_create_temporary_tables(warehouse):
        pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres incremental builds need it")
    incremental = (*BUILD, "--vars", "{valuation_incremental: true}")
    histories = _collect(20)
    early = [rows[: len(rows) // 2] for rows in histories]
    late = [rows[len(rows) // 2 :] for rows in histories]
    skus = load_histories(load_file_rows, early)
    prefix = skus[0].rsplit("-", 1)[0]
    dbt(*incremental, "--full-refresh")
    load_histories(load_file_rows, late[: len(late) // 2], prefix=prefix)  # touches half the SKUs
    dbt(*incremental)
    with warehouse.connect("transformer") as conn:
        problems = compare(conn, prefix)
    assert not problems, _report(problems)


def test_dbt_unit_tests(warehouse, dbt):
    """The dbt unit tests of the valuation pass (edge cases of DESIGN §7 on hand-checked histories),
    opt-in through var dbt_unit_tests because dbt-postgres runs them through temporary tables."""
    if not _can_create_temporary_tables(warehouse):
        pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres unit tests need it")
    dbt("run", "--select", "int_valuation_functions_created")  # the functions the model calls
    result = dbt(
        "test",
        "--select",
        "int_valuation_entries_posted,test_type:unit",
        "--vars",
        "{dbt_unit_tests: true}",
    )
    assert "PASS=4" in result.stdout, result.stdout[-2000:]
