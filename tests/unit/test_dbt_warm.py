"""The warm dbt (orchestration.lib.dbt_warm): invocations relayed to a server that imported dbt once behave
like the `dbt` executable (output, exit code, interrupt), and without a usable server the client is that
executable."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import time

import pytest

from orchestration.lib.dbt import dbt_executable
from orchestration.lib.dbt_warm import ENV, real_dbt, warm_dbt
from orchestration.settings import DBT_PROJECT_DIR


def _client_cpu(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run the client; also return the CPU seconds its own process used (children's rusage delta)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([dbt_executable(), *args], capture_output=True, text=True, env=env, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.fixture(scope="module")
def server(warm_dbt_server):
    assert warm_dbt_server, "the session's warm dbt server did not start"
    assert os.environ[ENV] == warm_dbt_server
    return warm_dbt_server


def test_the_executable_is_the_client():
    assert dbt_executable().endswith("inventory-sync-dbt")


def test_relayed_invocation_matches_dbt(server):
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    warm, warm_cpu = _client_cpu(["--version"], env)
    cold, cold_cpu = _client_cpu(["--version"], {k: v for k, v in env.items() if k != ENV})
    assert warm.returncode == cold.returncode == 0
    assert "installed:" in warm.stdout + warm.stderr
    # Same report; only the "latest version" line may differ (dbt asks PyPI, which may be unreachable).
    keep = [line for line in (warm.stdout + warm.stderr).splitlines() if "installed" in line or "postgres" in line]
    assert keep == [line for line in (cold.stdout + cold.stderr).splitlines() if "installed" in line or "postgres" in line]
    # Relayed: the client process itself never imported dbt (a real dbt process spends seconds of CPU on it).
    assert warm_cpu < cold_cpu / 3, (warm_cpu, cold_cpu)


def test_exit_code_and_error_output_pass_through(server):
    proc, _ = _client_cpu(["no-such-command"], dict(os.environ))
    assert proc.returncode == 2
    assert "No such command 'no-such-command'" in proc.stdout + proc.stderr


def _sleeping(warehouse) -> int:
    with warehouse.admin_connect(autocommit=True) as conn:
        return conn.execute("select count(*) from pg_stat_activity where query like '%pg_sleep(61)%'"
                            " and pid <> pg_backend_pid()").fetchone()[0]


def test_interrupt_reaches_dbt(server, runtime_env, warehouse):
    """dagster-dbt stops a run's dbt with SIGINT: the client forwards it, dbt cancels its query and exits
    non-zero."""
    proc = subprocess.Popen(
        [dbt_executable(), "show", "--inline", "select pg_sleep(61)", "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **runtime_env},
    )
    try:
        deadline = time.monotonic() + 60
        while not _sleeping(warehouse):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "no query"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert code != 0
    assert _sleeping(warehouse) == 0, "dbt's query still runs after the interrupt"


def test_no_server_means_the_real_dbt(tmp_path):
    env = {**os.environ, ENV: str(tmp_path / "gone.sock")}
    proc, cpu = _client_cpu(["--version"], env)
    assert proc.returncode == 0 and "installed:" in proc.stdout + proc.stderr
    assert real_dbt().endswith("/dbt")


def test_a_server_from_another_environment_is_not_used(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(server)
        sock.sendall(json.dumps({"argv": ["--version"], "cwd": "/", "env": {}, "prefix": "/elsewhere"}).encode() + b"\n")
        assert sock.recv(64) == b"\0STALE\n"


def test_warm_dbt_restores_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with warm_dbt(tmp_path) as path:
        assert path and os.environ[ENV] == path and os.path.exists(path)
        proc, _ = _client_cpu(["no-such-command"], dict(os.environ))
        assert proc.returncode == 2
    assert ENV not in os.environ
    assert not os.path.exists(path), "the socket outlived its server"


def test_the_class_caches_the_server_warms_exist_in_this_dbt():
    """The server fills them under `suppress` (a speed-up only): an upgrade of dbt that moves a class must
    show up here rather than as a silent loss of the warm-up."""
    from orchestration.lib.dbt_warm import _warm_class_caches

    _warm_class_caches()
