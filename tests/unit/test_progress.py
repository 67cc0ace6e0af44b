"""Progress as the commands use it: silent unless someone watches, on stderr, never changing results.

(tests/report/test_progress.py covers the module's own bar and timing; these cover the contract the
importer, the bench and the demo rely on, and the two places where the wiring runs without a database.)
"""

from __future__ import annotations

import io

import pytest

from orchestration.lib import benchgen
from orchestration.lib.progress import interactive, progress, stage


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def not_a_terminal(monkeypatch):
    """stdout is a pipe (CI, `| tee`, Dagster), and nobody forced progress on."""
    monkeypatch.delenv("INVENTORY_SYNC_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())


@pytest.fixture
def forced(monkeypatch):
    """INVENTORY_SYNC_PROGRESS=1 with stdout still a pipe (e.g. `make demo | tee`)."""
    monkeypatch.setenv("INVENTORY_SYNC_PROGRESS", "1")
    monkeypatch.setattr("sys.stdout", io.StringIO())


def test_nothing_on_stderr_when_stdout_is_not_a_terminal(not_a_terminal, capfd):
    assert not interactive()
    assert list(progress(range(1000), total=1000, desc="loading movements", unit="row")) == list(range(1000))
    with stage("dbt build") as s:
        s.note("412 models")
    with stage("extract", total=10) as s:
        s.advance(10)
    with pytest.raises(ValueError), stage("push"):
        raise ValueError("boom")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert s.elapsed >= 0  # the timing is kept either way


def test_forced_stage_prints_its_name_and_timing_on_stderr(forced, capfd):
    with stage("dbt build") as s:
        s.note("412 models")
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "dbt build …"
    assert lines[1].startswith("dbt build … done in ") and lines[1].endswith("s (412 models)")


def test_off_switch_wins_over_a_terminal(monkeypatch, capfd):
    monkeypatch.setenv("INVENTORY_SYNC_PROGRESS", "0")
    monkeypatch.setattr("sys.stdout", Tty())
    with stage("dbt build"):
        pass
    assert capfd.readouterr().err == ""


def test_a_failing_stage_says_so_and_reraises_the_same_exception(forced, capfd):
    boom = RuntimeError("warehouse went away")
    with pytest.raises(RuntimeError) as raised, stage("sync cycle 2"):
        raise boom
    assert raised.value is boom
    err = capfd.readouterr().err
    assert "sync cycle 2 … failed after " in err
    assert "done in" not in err


@pytest.mark.parametrize("mode", ["not_a_terminal", "forced"])
def test_progress_yields_every_item_unchanged(mode, request, capfd):
    request.getfixturevalue(mode)
    items = [{"row": i} for i in range(250)]
    seen = list(progress(iter(items), total=None, desc="rows", unit="row"))  # no len(): a plain iterator
    assert len(seen) == len(items) and all(a is b for a, b in zip(seen, items, strict=True))
    assert list(progress([], total=0, desc="nothing")) == []
    err = capfd.readouterr().err
    assert ("rows" in err) == (mode == "forced")


# -- the wiring, where it runs without a database ------------------------------------------------------


class _Copy:
    def __init__(self, sink: list[str]):
        self.sink = sink

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, data: str) -> None:
        self.sink.append(data)


class _Cursor(_Copy):
    def copy(self, statement: str) -> _Copy:
        assert statement.startswith("copy raw.file_movements (")
        return _Copy(self.sink)


class _Conn:
    """Just enough of a psycopg connection for COPY: records what would be sent."""

    def __init__(self):
        self.sent: list[str] = []

    def cursor(self) -> _Cursor:
        return _Cursor(self.sent)


def _copy(total: int | None) -> tuple[int, list[str]]:
    shape = benchgen.Shape.build(movements=1200, skus=4, locations=5)
    conn = _Conn()
    count = benchgen.copy_movements(conn, benchgen.movements(shape), "b1", chunk=500, total=total)
    return count, conn.sent


def test_bench_copy_sends_the_same_chunks_with_or_without_a_bar(monkeypatch, capfd):
    monkeypatch.delenv("INVENTORY_SYNC_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    quiet = _copy(total=1200)
    assert capfd.readouterr().err == ""
    monkeypatch.setenv("INVENTORY_SYNC_PROGRESS", "1")
    shown = _copy(total=1200)
    assert "movements, 500 per chunk" in capfd.readouterr().err
    unbarred = _copy(total=None)  # the incremental batch passes no total: no bar
    assert capfd.readouterr().err == ""
    assert quiet == shown == unbarred
    count, sent = quiet
    assert count == 1200 and [c.count("\n") for c in sent] == [500, 500, 200]


class _NoWarehouse:
    """The importer reaches the warehouse only after reading the file; this one refuses to connect."""

    def connect(self, role: str):
        raise ConnectionRefusedError(f"no warehouse in unit tests (role {role})")


def test_importer_reports_its_stages_when_forced(forced, capfd, tmp_path):
    from orchestration.lib.importer import import_file

    path = tmp_path / "skus.csv"
    path.write_text("sku,base_uom,description\nSKU-1,EA,one\nSKU-2,EA,two\n,EA,no sku\n", encoding="utf-8")
    with pytest.raises(ConnectionRefusedError):
        import_file(_NoWarehouse(), "skus", path, layouts={})
    out, err = capfd.readouterr()
    assert out == ""
    assert "reading skus.csv (skus) … done in " in err
    assert "(3 rows, 1 to quarantine)" in err
    assert "loading 2 skus rows … failed after " in err


def test_importer_is_silent_when_not_a_terminal(not_a_terminal, capfd, tmp_path):
    from orchestration.lib.importer import import_file

    path = tmp_path / "skus.csv"
    path.write_text("sku,base_uom,description\nSKU-1,EA,one\n", encoding="utf-8")
    with pytest.raises(ConnectionRefusedError):
        import_file(_NoWarehouse(), "skus", path, layouts={})
    assert capfd.readouterr() == ("", "")
