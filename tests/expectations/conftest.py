"""Fixtures for the suite tests: scratch schemas on the session warehouse, readable by the transformer.

The suites are pointed at `gx_<id>_raw`, `gx_<id>_marts`, … (via `expectations._common.Schemas`), so
these tests never touch the real `raw`/`marts` relations other tests and dbt build.
"""

from __future__ import annotations

import uuid

import pytest
from psycopg import sql

from expectations._common import Schemas


@pytest.fixture(scope="session")
def scratch(warehouse):
    prefix = f"gx_{uuid.uuid4().hex[:8]}"
    schemas = Schemas(raw=f"{prefix}_raw", staging=f"{prefix}_staging", intermediate=f"{prefix}_intermediate", marts=f"{prefix}_marts")
    role = sql.Identifier(warehouse.role_name("transformer"))
    with warehouse.admin_connect(autocommit=True) as conn:
        for schema in schemas.as_dict().values():
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), role))
            conn.execute(sql.SQL("alter default privileges in schema {} grant select on tables to {}").format(sql.Identifier(schema), role))
    yield schemas
    with warehouse.admin_connect(autocommit=True) as conn:
        for schema in schemas.as_dict().values():
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))


@pytest.fixture
def table(warehouse, scratch):
    """`table(layer, name, ddl_columns, rows)`: (re)create a scratch table and fill it."""

    def make(layer: str, name: str, columns: str, rows: list[tuple] = ()) -> str:
        qualified = sql.SQL("{}.{}").format(sql.Identifier(scratch.as_dict()[layer]), sql.Identifier(name))
        with warehouse.admin_connect(autocommit=True) as conn:
            conn.execute(sql.SQL("drop table if exists {}").format(qualified))
            conn.execute(sql.SQL("create table {} ({})").format(qualified, sql.SQL(columns)))
            if rows:
                marks = sql.SQL(", ").join(sql.Placeholder() * len(rows[0]))
                with conn.cursor() as cur:
                    cur.executemany(sql.SQL("insert into {} values ({})").format(qualified, marks), rows)
        return f"{scratch.as_dict()[layer]}.{name}"

    return make


@pytest.fixture
def gx_home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def run(warehouse, scratch, gx_home):
    """Run a registered suite on the scratch schemas; returns the `SuiteOutcome`."""
    from expectations.registry import all_suites
    from orchestration.lib.gx import run_suite

    def go(name: str, build_docs: bool = False):
        spec = all_suites(tables=[("chan", "levels")])[name]
        return run_suite(spec, warehouse.url("transformer", driver="postgresql+psycopg"), gx_home, schemas=scratch, build_docs=build_docs)

    return go
