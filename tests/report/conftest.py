"""The report tests share one seeded history (tests/report/seed.py), valued by one dbt build."""

from __future__ import annotations

import pytest

from tests.report.seed import seed


@pytest.fixture(scope="session")
def seeded_valuation(warehouse, load_file_rows, dbt):
    seed(warehouse, load_file_rows, dbt)
    return warehouse
