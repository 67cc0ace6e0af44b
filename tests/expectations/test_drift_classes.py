"""The drift classification of marts.fct_channel_drift (DESIGN §8) on hand-checked cases: its dbt unit
tests (dbt_project/models/marts/drift/_drift__unit_tests.yml). Their inputs are SQL, so they need no
upstream relation; dbt-postgres runs them through temporary tables."""

from __future__ import annotations

import pytest


def test_drift_class_unit_tests(warehouse, dbt):
    with warehouse.connect("transformer") as conn:
        if not conn.execute("select has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0]:
            pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres unit tests need it")
    result = dbt("test", "--select", "fct_channel_drift,test_type:unit", "--vars", "{dbt_unit_tests: true}")
    assert "PASS=6" in result.stdout and "ERROR=0" in result.stdout, result.stdout[-2000:]
