"""Least-privilege roles grant exactly what DESIGN §10 says, and keep doing so after dbt swaps tables."""

from __future__ import annotations

import psycopg
import pytest

DENIED = psycopg.errors.InsufficientPrivilege


@pytest.fixture(scope="module")
def built(warehouse, dbt, load_file_rows):
    load_file_rows("skus", [{"sku": "ROLE-1", "base_uom": "EA", "description": "probe"}])
    with warehouse.connect("transformer") as conn:
        conn.execute("create table if not exists marts.role_probe as select 1 as x")
    return warehouse


# (role, sql, allowed)
MATRIX = [
    ("analyst", "select count(*) from marts.role_probe", True),
    ("analyst", "select count(*) from raw.file_skus", False),
    ("analyst", "select count(*) from staging.stg_file__skus", False),
    ("analyst", "select count(*) from ops.corrections", False),
    ("analyst", "insert into marts.role_probe values (2)", False),
    ("analyst", "create table marts.analyst_made (x int)", False),
    ("analyst", "create table public.analyst_made (x int)", False),
    ("finance", "select count(*) from marts.role_probe", True),
    ("finance", "select count(*) from ops.sync_log", True),
    ("finance", "select count(*) from raw.file_skus", False),
    ("finance", "delete from marts.role_probe", False),
    ("loader", "insert into raw.file_skus (sku, base_uom, batch_id) values ('ROLE-2', 'EA', 'b')", True),
    ("loader", "select count(*) from marts.role_probe", False),
    ("loader", "insert into ops.corrections (correction_id, idempotency_key, channel, sku, location, from_quantity, to_quantity, drift_class, status) values ('c','k','x','s','l',0,0,'lag','planned')", False),
    ("transformer", "select count(*) from raw.file_skus", True),
    ("transformer", "insert into raw.file_skus (sku, base_uom, batch_id) values ('ROLE-3', 'EA', 'b')", False),
    ("transformer", "create table marts.transformer_made (x int)", True),
    ("transformer", "update ops.corrections set status = 'applied'", False),
    ("transformer", "select count(*) from ops.extract_cursors", True),
    ("transformer", "update ops.extract_cursors set cursor_value = '{}'", False),
    ("analyst", "select count(*) from ops.extract_cursors", False),
    ("pusher", "select count(*) from marts.role_probe", True),
    ("pusher", "insert into ops.corrections (correction_id, idempotency_key, channel, sku, location, from_quantity, to_quantity, drift_class, status) values ('c1','k1','x','s','l',0,0,'lag','planned')", True),
    ("pusher", "select count(*) from raw.file_skus", False),
    ("pusher", "delete from ops.sync_log", False),
]


@pytest.mark.parametrize("role, statement, allowed", MATRIX, ids=[f"{r}:{s[:40]}" for r, s, _ in MATRIX])
def test_permission_matrix(built, role, statement, allowed):
    with built.connect(role) as conn:
        try:
            if allowed:
                conn.execute(statement)
            else:
                with pytest.raises(DENIED):
                    conn.execute(statement)
        finally:
            conn.rollback()


def test_no_role_is_superuser(built):
    with built.admin_connect() as conn:
        names = [built.role_name(r) for r in ("loader", "transformer", "pusher", "analyst", "finance")]
        rows = conn.execute("select rolname, rolsuper, rolbypassrls, rolcreaterole from pg_roles where rolname = any(%s)", (names,)).fetchall()
    assert len(rows) == 5
    assert not any(sup or bypass or createrole for _, sup, bypass, createrole in rows)


def test_analyst_reads_marts_rebuilt_by_dbt(built, dbt):
    """Grants survive dbt's build-and-swap: a freshly built mart is readable by analyst, not writable."""
    dbt("run", "--select", "stg_file__skus")
    with built.connect("transformer") as conn:
        conn.execute("drop table if exists marts.role_probe; create table marts.role_probe as select 3 as x")
    with built.connect("analyst") as conn:
        assert conn.execute("select x from marts.role_probe").fetchone() == (3,)
        with pytest.raises(DENIED):
            conn.execute("truncate marts.role_probe")


def test_an_existing_warehouse_gets_new_grants_when_opened(built, session_settings):
    """A warehouse bootstrapped by an older release (a lower ops.bootstrap version, without the transformer's
    read of ops.extract_cursors) is bootstrapped again when opened, and so gains the grant."""
    from psycopg import sql

    from orchestration.lib.warehouse import BOOTSTRAP_VERSION, open_warehouse

    transformer = sql.Identifier(built.role_name("transformer"))
    with built.admin_connect() as conn:
        conn.execute(sql.SQL("revoke select on ops.extract_cursors from {}").format(transformer))
        conn.execute("update ops.bootstrap set version = %s", (BOOTSTRAP_VERSION - 1,))
    with built.connect("transformer") as conn, pytest.raises(DENIED):
        conn.execute("select count(*) from ops.extract_cursors")
    assert not built.is_bootstrapped()
    reopened = open_warehouse(session_settings)
    assert reopened.is_bootstrapped()
    with reopened.connect("transformer") as conn:
        conn.execute("select count(*) from ops.extract_cursors")
