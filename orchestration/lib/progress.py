"""Progress for people watching a terminal: bars for long loops, timed lines for stages.

Owns the one way the project shows progress. It is quiet when stdout is not a terminal (CI logs,
pipes, Dagster runs, tests): nothing is drawn, and stages print nothing unless asked. `tqdm` draws to
stderr so the command's own output on stdout (CSV, summaries) stays clean.

    from orchestration.lib.progress import progress, stage

    for row in progress(rows, total=len(rows), desc="loading movements", unit="row"):
        ...
    with stage("dbt build") as s:
        ...
        s.note("412 models")          # shown after the timing: "dbt build … done in 12.3s (412 models)"
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def interactive(stream=None) -> bool:
    """True when a person is watching: the stream is a terminal and INVENTORY_SYNC_PROGRESS is not 0.
    INVENTORY_SYNC_PROGRESS=1 forces progress on (e.g. `make demo | tee`)."""
    forced = os.environ.get("INVENTORY_SYNC_PROGRESS")
    if forced is not None:
        return forced.strip().lower() not in ("0", "", "false", "no", "off")
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
             **tqdm_kwargs) -> Iterator[T]:
    """`iterable`, with a tqdm bar on stderr when stdout is a terminal; unchanged otherwise."""
    if not interactive():
        yield from iterable
        return
    from tqdm import tqdm

    with tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
              leave=False, **tqdm_kwargs) as bar:
        yield from bar


class Stage:
    """A running stage: `note()` adds a detail to its closing line, `advance()` moves its bar (if any)."""

    def __init__(self, name: str, total: int | None, show: bool):
        self.name, self.total, self.show = name, total, show
        self.details: list[str] = []
        self.started = time.perf_counter()
        self.elapsed = 0.0
        self._bar = None
        if show and total is not None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=name, file=sys.stderr, dynamic_ncols=True, leave=False)
        elif show:
            print(f"{name} …", file=sys.stderr, flush=True)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        self.details.append(text)

    def _close(self, failed: bool) -> None:
        self.elapsed = time.perf_counter() - self.started
        if self._bar is not None:
            self._bar.close()
        if self.show:
            extra = f" ({'; '.join(self.details)})" if self.details else ""
            verdict = "failed after" if failed else "done in"
            print(f"{self.name} … {verdict} {self.elapsed:.1f}s{extra}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stage(name: str, total: int | None = None, always: bool = False) -> Iterator[Stage]:
    """Time a stage; on a terminal (or with `always`) print its start and `name … done in 1.2s`.
    With `total`, a bar that `advance()` moves. The timing is in `.elapsed` either way."""
    s = Stage(name, total, show=always or interactive())
    try:
        yield s
    except BaseException:
        s._close(failed=True)
        raise
    s._close(failed=False)
