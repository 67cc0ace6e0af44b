"""orchestration.lib.progress: silent when nobody watches, a bar and timings on a terminal."""

from __future__ import annotations

import io

import pytest

from orchestration.lib import progress as prog


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_quiet_when_stdout_is_not_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("INVENTORY_SYNC_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert list(prog.progress(range(5), total=5, desc="rows")) == [0, 1, 2, 3, 4]
    with prog.stage("dbt build", total=3) as s:
        s.advance()
        s.note("3 models")
    assert s.elapsed >= 0
    assert capsys.readouterr().err == ""


def test_bar_and_timing_on_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("INVENTORY_SYNC_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stdout", Tty())
    assert sum(prog.progress(range(50), total=50, desc="loading movements", unit="row")) == sum(range(50))
    with prog.stage("dbt build") as s:
        s.note("12 models")
    err = capsys.readouterr().err
    assert "loading movements" in err
    assert "dbt build … done in" in err and "(12 models)" in err


def test_forced_by_environment_and_failure_reported(monkeypatch, capsys):
    monkeypatch.setenv("INVENTORY_SYNC_PROGRESS", "1")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    with pytest.raises(RuntimeError), prog.stage("extract"):
        raise RuntimeError("boom")
    assert "extract … failed after" in capsys.readouterr().err
    monkeypatch.setenv("INVENTORY_SYNC_PROGRESS", "0")
    monkeypatch.setattr("sys.stdout", Tty())
    assert not prog.interactive()
