"""The embedded server starts, is reused, stops; failures leave nothing half-built; the external URL path."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from orchestration.lib.warehouse import (
    EmbeddedPostgres,
    Warehouse,
    WarehouseError,
    open_warehouse,
    parse_database_url,
)
from orchestration.settings import Settings


@pytest.fixture
def scratch_server(tmp_path):
    server = EmbeddedPostgres(tmp_path / "home")
    yield server
    server.stop()


def test_embedded_server_starts_is_reused_and_stops(scratch_server):
    first = scratch_server.start()
    again = scratch_server.start()
    assert again.pid == first.pid and again.port == first.port
    with psycopg.connect(f"host={first.socket_dir} port={first.port} user=postgres dbname=postgres") as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    # TCP listens and demands a password.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host=127.0.0.1 port={first.port} user=postgres dbname=postgres password=wrong", connect_timeout=5)
    assert scratch_server.stop() is True
    assert scratch_server.info() is None
    assert scratch_server.stop() is False


def test_restart_prefers_the_same_port_and_moves_when_it_is_taken(scratch_server):
    port = scratch_server.start().port
    scratch_server.stop()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        moved = scratch_server.start()
        assert moved.port != port
    scratch_server.stop()
    assert scratch_server.start().port == moved.port


def test_stale_postmaster_pid_is_ignored(scratch_server):
    scratch_server.start()
    scratch_server.stop()
    # A pid file left by a crash, naming a pid that is not a postgres process.
    (scratch_server.pgdata / "postmaster.pid").write_text("999999\n/x\n1\n5432\n/tmp\n127.0.0.1\n")
    assert scratch_server.info() is None
    assert scratch_server.start().pid != 999999


def test_failed_first_start_leaves_no_half_initialized_cluster(tmp_path, monkeypatch):
    server = EmbeddedPostgres(tmp_path / "home")

    def broken_launch(self):
        raise WarehouseError("the embedded PostgreSQL did not start: simulated")

    monkeypatch.setattr(EmbeddedPostgres, "_launch", broken_launch)
    with pytest.raises(WarehouseError, match="did not start"):
        server.start()
    assert not (server.pgdata / "PG_VERSION").exists()


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u:p@h/db", "must look like postgresql://"),
        ("postgresql://u:p@host:notaport/db", "not a valid URL"),
        ("postgresql://u:p@host:5432/", "must look like postgresql://"),
    ],
)
def test_unreadable_database_url_is_a_one_line_error(url, message):
    with pytest.raises(WarehouseError, match=message) as err:
        parse_database_url(url)
    assert "\n" not in str(err.value)


def test_unreachable_database_url_says_where(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wh = Warehouse(Settings(home=tmp_path, database_url=f"postgresql://u:p@127.0.0.1:{port}/nope"))
    with pytest.raises(WarehouseError, match=f"cannot connect to INVENTORY_SYNC_DATABASE_URL \\(127.0.0.1:{port}/nope\\)"):
        wh.start()


def test_external_database_url_gets_the_same_bootstrap(tmp_path):
    """A second, independent server plays the production PostgreSQL reached by URL."""
    other = EmbeddedPostgres(tmp_path / "other")
    info = other.start()
    try:
        with psycopg.connect(f"host={info.socket_dir} port={info.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute("create role shop_admin login createrole password 'admin-pw'")
            conn.execute("create database shop owner shop_admin")
        url = f"postgresql://shop_admin:admin-pw@127.0.0.1:{info.port}/shop"
        wh = open_warehouse(Settings(home=tmp_path / "state", database_url=url))
        assert wh.embedded is None and wh.is_bootstrapped()
        assert wh.role_name("analyst") == "shop_analyst"
        with wh.connect("loader") as conn:
            conn.execute("create table raw.probe (x int)")
            conn.commit()
        with wh.connect("analyst") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from raw.probe")
        # Dagster's storage works there too (same database, its own role).
        with psycopg.connect(wh.dagster_url().replace("+psycopg2", "")) as conn:
            conn.execute("create table public.dagster_probe (x int)")
    finally:
        other.stop()


def test_credentials_file_is_private(warehouse, session_settings):
    mode = (Path(session_settings.home) / "credentials.json").stat().st_mode & 0o777
    assert mode == 0o600
