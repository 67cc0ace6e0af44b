"""`inventory-sync bench`: stage timings, rows per second and peak memory, with the floor beside them.

Owns the benchmark run: its own warehouse, the stages, the memory sampler, the table and the JSON.
The bench never touches the configured warehouse: it runs an embedded PostgreSQL of its own in
`$INVENTORY_SYNC_HOME/bench` (wiped at the start of every run, stopped at the end), bootstrapped with
the same roles and grants. A separate server rather than a second database on the configured one:
no other database's queries, Dagster storage or locks share its buffers and caches, the process-tree
memory figure covers exactly the bench's own postmaster (the machine's CPUs stay shared: the JSON
records the load average), and a
`make bench` can never truncate real data — also when INVENTORY_SYNC_DATABASE_URL points elsewhere.

Stages that cannot run are reported as `{"missing": true, "reason": ...}`, never faked. `latency`
and `oversells` are a deterministic simulation driven by the measured cycle time (the push/sensor
loop is not driven live here); the JSON says so in `method`.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestration.lib import benchgen
from orchestration.lib.progress import stage
from orchestration.settings import DBT_PROJECT_DIR, Settings

STAGES = ("extract_file", "extract_http", "dbt_build_full", "valuation_full", "window_pass_floor", "python_loop",
          "plpgsql_loop", "incremental_cycle")
VALUATION_NODE = "model.inventory_sync.int_valuation_entries_posted"
VALUATION_MARTS = ("fct_inventory_valuation", "fct_cost_layers", "fct_cost_of_goods")
FILE_SAMPLE_ROWS = 100_000  # extract_file imports at most this many rows through the import path
HTTP_ROWS = 50_000  # extract_http reads about this many changes (at most) from the Square simulator
LATE_EVENTS = 10_000
BATCH_INTERVAL = 900.0  # the 15-minute batch baseline of the oversell comparison
MARKER = ".inventory-sync-bench"
# The live loop: the demo retailer at this size, live traffic during the first LIVE_TRAFFIC_CYCLES cycles,
# then up to LIVE_CYCLES in all to settle.
LIVE_SKUS, LIVE_CYCLES, LIVE_TRAFFIC_CYCLES, LIVE_RATE = 300, 20, 16, 2.0
# dbt unit tests run on their own fixtures, whatever the data: they are not part of a build's cost.
BUILD_SELECTION = ("--exclude-resource-type", "unit_test")


class BenchError(RuntimeError):
    """The bench cannot run at all (its home is not its own, the warehouse did not start)."""


def missing(reason: str) -> dict[str, Any]:
    return {"missing": True, "reason": reason}


# --------------------------------------------------------------------------------------------------
# Peak memory of the whole process tree (this process, its children, the bench's PostgreSQL)
# --------------------------------------------------------------------------------------------------


class MemorySampler:
    """Samples the summed RSS of this process, its descendants (dbt) and the bench postmaster's tree
    every `interval` seconds in a thread. RSS sums count shared memory (PostgreSQL's shared buffers)
    once per process that touched it, so that figure is an upper bound; the PSS sum (shared pages
    split between the processes sharing them) is what the tree really occupies."""

    def __init__(self, postmaster_pid: Callable[[], int | None], interval: float = 0.2):
        import psutil

        self._psutil = psutil
        self._postmaster = postmaster_pid
        self.interval = interval
        self.peak = 0
        self.stage_peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def sample(self) -> int:
        ps = self._psutil
        procs: dict[int, Any] = {}
        roots = [os.getpid()]
        pm = self._postmaster()
        if pm:
            roots.append(pm)
        for pid in roots:
            try:
                root = ps.Process(pid)
                procs[root.pid] = root
                for child in root.children(recursive=True):
                    procs[child.pid] = child
            except ps.Error:
                continue
        total = pss = 0
        for proc in procs.values():
            try:
                info = proc.memory_full_info()
            except ps.Error:
                continue
            total += info.rss
            pss += getattr(info, "pss", info.rss)
        self.peak = max(self.peak, total)
        self.peak_pss = max(self.peak_pss, pss)
        self.stage_peak = max(self.stage_peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def begin_stage(self) -> None:
        self.stage_peak = self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


def _mb(n: int) -> float:
    return round(n / 1048576, 1)


def _progress_note(result: dict[str, Any]) -> str:
    """The detail on a stage's closing line at a terminal: what it measured, or why it is missing."""
    if result.get("missing"):
        return f"missing: {str(result.get('reason', ''))[:160]}"
    rate = result.get("rows_per_second")
    return f"measured {result.get('seconds')}s" + (f", {rate:,} rows/s" if isinstance(rate, int | float) else "")


# --------------------------------------------------------------------------------------------------
# The bench warehouse
# --------------------------------------------------------------------------------------------------


def bench_settings(settings: Settings) -> Settings:
    """An embedded instance in $INVENTORY_SYNC_HOME/bench with the bundled channel registry."""
    return Settings(home=settings.home / "bench")


def open_bench_warehouse(settings: Settings):
    """Wipe and start the bench's own embedded server, bootstrapped like any instance."""
    from orchestration.lib import raw
    from orchestration.lib.registry import load_registry
    from orchestration.lib.warehouse import EmbeddedPostgres, open_warehouse

    home = settings.home
    if home.exists() and any(home.iterdir()) and not (home / MARKER).exists():
        raise BenchError(f"{home} exists and was not made by the bench; move it away and retry")
    EmbeddedPostgres(home).stop()
    for name in ("pgdata", "dbt-target", "dbt-logs", "work"):
        shutil.rmtree(home / name, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("made by `inventory-sync bench`; wiped at the start of every bench run\n")
    (home / "work").mkdir()
    wh = open_warehouse(settings)
    with wh.connect("loader") as conn:
        raw.ensure_file_tables(conn)
        raw.ensure_api_tables(conn, load_registry())
    return wh


def _admin_scalar(wh, query: str, params: tuple = ()) -> Any:
    with wh.admin_connect() as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


# --------------------------------------------------------------------------------------------------
# dbt
# --------------------------------------------------------------------------------------------------


def _dbt(settings: Settings, wh, *args: str) -> tuple[float, subprocess.CompletedProcess, list[dict]]:
    """Run the dbt CLI against the bench warehouse (its own target and log paths, so a bench never
    overwrites the project's target/ a teammate is using). Returns seconds, the process, run results."""
    from orchestration.cli import runtime_env
    from orchestration.lib.dbt import dbt_executable

    target = settings.home / "dbt-target"
    env = {**os.environ, **runtime_env(settings, wh)}
    cmd = [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
           "--target-path", str(target), "--log-path", str(settings.home / "dbt-logs")]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=DBT_PROJECT_DIR)
    seconds = time.monotonic() - started
    log = settings.home / "work" / f"dbt-{args[0]}-{int(time.time())}.log"
    log.write_text(proc.stdout + proc.stderr)
    proc.log_path = log  # where the user reads what failed
    try:
        results = json.loads((target / "run_results.json").read_text())["results"]
    except (OSError, ValueError, KeyError):
        results = []
    return seconds, proc, results


def _dbt_summary(proc: subprocess.CompletedProcess, results: list[dict]) -> dict[str, Any]:
    status = [r.get("status") for r in results]
    summary = {
        "nodes": len(results),
        "errors": status.count("error"),
        "test_failures": status.count("fail"),
        "test_warnings": status.count("warn"),
        "skipped": status.count("skipped"),
        "exit_code": proc.returncode,
    }
    if proc.returncode != 0 and not results:
        tail = (proc.stdout + proc.stderr).strip().splitlines()
        summary["detail"] = tail[-1][:300] if tail else "no output"
    return summary


def _broken(seconds: float, summary: dict[str, Any], proc) -> dict[str, Any] | None:
    """A build with errors or skipped nodes built less than the project: its time is not the figure."""
    if summary["errors"] or summary["skipped"]:
        return {**missing(f"dbt build had {summary['errors']} error(s) and skipped {summary['skipped']} node(s); "
                          f"see {proc.log_path}"), "partial_seconds": round(seconds, 3)}
    return None


def _node(results: list[dict], unique_id: str) -> dict | None:
    return next((r for r in results if r.get("unique_id") == unique_id), None)


# --------------------------------------------------------------------------------------------------
# The plain Python alternative: FIFO and AVCO in a loop over the ordered ledger
# --------------------------------------------------------------------------------------------------


ZERO = Decimal(0)


def python_valuation(rows) -> tuple[int, Decimal, Decimal]:
    """Value rows (sku, location, movement_type, quantity_base, unit_cost_base, reference, event_id),
    ordered by SKU then valuation order, with FIFO layers and a moving average per SKU and location.
    The obvious implementation of DESIGN §7 (returns at the sale's cost, transfers at the sender's
    cost, counts as adjustments, negative stock at the last cost) — for timing, not the reference.
    Returns (rows, FIFO value, AVCO value) at the end."""
    count = 0
    fifo_total = avco_total = ZERO
    sku = None
    layers: dict[str, deque] = {}
    avco: dict[str, list[Decimal]] = {}
    last: dict[str, Decimal] = {}
    sale_cost: dict[str, Decimal] = {}
    sent_cost: dict[str, Decimal] = {}

    def close() -> tuple[Decimal, Decimal]:
        f = sum((q * c for dq in layers.values() for q, c in dq), ZERO)
        a = sum((v for _, v in avco.values()), ZERO)
        return f, a

    for row_sku, loc, mtype, qty, cost, ref, eid in rows:
        count += 1
        if row_sku != sku:
            if sku is not None:
                f, a = close()
                fifo_total += f
                avco_total += a
            sku = row_sku
            layers, avco, last, sale_cost, sent_cost = {}, {}, {}, {}, {}
        dq = layers.get(loc)
        if dq is None:
            dq = layers[loc] = deque()
            avco[loc] = [ZERO, ZERO]
        state = avco[loc]
        if mtype == "physical_count":
            qty = qty - state[0]
            if qty == 0:
                continue
        if qty > 0:
            unit = cost
            if unit is None:
                if mtype == "customer_return":
                    unit = sale_cost.get(ref)
                elif mtype == "transfer_in":
                    unit = sent_cost.get(ref)
            if unit is None:
                unit = last.get(loc, ZERO) if mtype != "adjustment" or state[0] <= 0 else state[1] / state[0]
            # FIFO: settle negative stock first (the revaluation is not stock value), then a layer
            remaining = qty
            while remaining and dq and dq[0][0] < 0:
                settle = min(remaining, -dq[0][0])
                dq[0][0] += settle
                remaining -= settle
                if dq[0][0] == 0:
                    dq.popleft()
            if remaining:
                dq.append([remaining, unit])
            # AVCO
            if state[0] <= 0:
                state[0] += qty
                state[1] = state[0] * unit if state[0] > 0 else ZERO
            else:
                state[0] += qty
                state[1] += qty * unit
            last[loc] = unit
        else:
            out = -qty
            issued = ZERO
            while out and dq and dq[0][0] > 0:
                take = min(out, dq[0][0])
                issued += take * dq[0][1]
                dq[0][0] -= take
                out -= take
                if dq[0][0] == 0:
                    dq.popleft()
            if out:  # beyond the layers: provisional at the last cost, a negative layer
                provisional = last.get(loc, ZERO)
                issued += out * provisional
                dq.append([-out, provisional])
            unit_out = issued / -qty
            if state[0] > 0:
                avg = state[1] / state[0]
                state[0] += qty
                state[1] = ZERO if state[0] == 0 else state[1] + qty * avg
            else:
                state[0] += qty
                state[1] = state[0] * last.get(loc, ZERO)
            if mtype == "sale":
                sale_cost[eid] = unit_out
            elif mtype == "transfer_out" and ref is not None:
                sent_cost[ref] = unit_out
    if sku is not None:
        f, a = close()
        fifo_total += f
        avco_total += a
    return count, fifo_total, avco_total


# python_valuation, line for line, in PL/pgSQL: the least an ordered pass in PostgreSQL's own procedural
# language costs (a temporary function; no output but the totals: no lineage, no entries written, no
# checkpoints). Per SKU, FIFO queues are linked lists over node arrays and the sale / transfer costs
# returns and transfer_ins look up are parallel arrays searched with array_position. Same totals as
# python_valuation wherever both divide exactly (Decimal and numeric round differently otherwise).
PLPGSQL_LOOP = """
create function pg_temp.bench_plpgsql_loop(out n bigint, out fifo numeric, out avco numeric)
language plpgsql as $fn$
declare
    r record;
    cur text;
    locs text[];
    li integer;
    qty numeric[]; val numeric[]; last numeric[]; head integer[]; tail integer[];
    lq numeric[] := '{}'; lc numeric[] := '{}'; lnext integer[] := '{}'; nl integer := 0;
    sale_ids text[]; sale_costs numeric[]; sent_refs text[]; sent_costs numeric[];
    q numeric; unit numeric; remaining numeric; settle numeric; issued numeric; node integer; k integer;
begin
    n := 0; fifo := 0; avco := 0;
    for r in
        select sku, location, movement_type, quantity_base, unit_cost_base, reference, event_id
        from intermediate.int_movements_unified
        order by sku, occurred_at, event_id collate "C", source_name collate "C"
    loop
        n := n + 1;
        if cur is distinct from r.sku then
            for li in 1 .. coalesce(cardinality(locs), 0) loop
                node := head[li];
                while node > 0 loop fifo := fifo + lq[node] * lc[node]; node := lnext[node]; end loop;
                avco := avco + val[li];
            end loop;
            cur := r.sku; locs := '{}'; qty := '{}'; val := '{}'; last := '{}'; head := '{}'; tail := '{}'; nl := 0;
            sale_ids := '{}'; sale_costs := '{}'; sent_refs := '{}'; sent_costs := '{}';
        end if;
        li := array_position(locs, r.location);
        if li is null then
            locs := locs || r.location; li := cardinality(locs);
            qty[li] := 0; val[li] := 0; last[li] := 0; head[li] := 0; tail[li] := 0;
        end if;
        q := r.quantity_base;
        if r.movement_type = 'physical_count' then
            q := q - qty[li];
            continue when q = 0;
        end if;
        if q > 0 then
            unit := r.unit_cost_base;
            if unit is null and r.movement_type = 'customer_return' then
                k := array_position(sale_ids, r.reference); unit := sale_costs[k];
            elsif unit is null and r.movement_type = 'transfer_in' then
                k := array_position(sent_refs, r.reference); unit := sent_costs[k];
            end if;
            if unit is null then
                unit := case when r.movement_type <> 'adjustment' or qty[li] <= 0 then last[li] else val[li] / qty[li] end;
            end if;
            -- FIFO: settle negative stock first, then a layer
            remaining := q;
            node := head[li];
            while remaining > 0 and node > 0 and lq[node] < 0 loop
                settle := least(remaining, -lq[node]);
                lq[node] := lq[node] + settle;
                remaining := remaining - settle;
                if lq[node] = 0 then node := lnext[node]; head[li] := node; if node = 0 then tail[li] := 0; end if; end if;
            end loop;
            if remaining > 0 then
                nl := nl + 1; lq[nl] := remaining; lc[nl] := unit; lnext[nl] := 0;
                if tail[li] = 0 then head[li] := nl; else lnext[tail[li]] := nl; end if;
                tail[li] := nl;
            end if;
            -- AVCO
            if qty[li] <= 0 then
                qty[li] := qty[li] + q;
                val[li] := case when qty[li] > 0 then qty[li] * unit else 0 end;
            else
                qty[li] := qty[li] + q;
                val[li] := val[li] + q * unit;
            end if;
            last[li] := unit;
        else
            remaining := -q;
            issued := 0;
            node := head[li];
            while remaining > 0 and node > 0 and lq[node] > 0 loop
                settle := least(remaining, lq[node]);
                issued := issued + settle * lc[node];
                lq[node] := lq[node] - settle;
                remaining := remaining - settle;
                if lq[node] = 0 then node := lnext[node]; head[li] := node; if node = 0 then tail[li] := 0; end if; end if;
            end loop;
            if remaining > 0 then  -- beyond the layers: provisional at the last cost, a negative layer
                issued := issued + remaining * last[li];
                nl := nl + 1; lq[nl] := -remaining; lc[nl] := last[li]; lnext[nl] := 0;
                if tail[li] = 0 then head[li] := nl; else lnext[tail[li]] := nl; end if;
                tail[li] := nl;
            end if;
            unit := issued / -q;
            if qty[li] > 0 then
                settle := val[li] / qty[li];
                qty[li] := qty[li] + q;
                val[li] := case when qty[li] = 0 then 0 else val[li] + q * settle end;
            else
                qty[li] := qty[li] + q;
                val[li] := qty[li] * last[li];
            end if;
            if r.movement_type = 'sale' then
                sale_ids := sale_ids || r.event_id; sale_costs := sale_costs || unit;
            elsif r.movement_type = 'transfer_out' and r.reference is not null then
                sent_refs := sent_refs || r.reference; sent_costs := sent_costs || unit;
            end if;
        end if;
    end loop;
    for li in 1 .. coalesce(cardinality(locs), 0) loop
        node := head[li];
        while node > 0 loop fifo := fifo + lq[node] * lc[node]; node := lnext[node]; end loop;
        avco := avco + val[li];
    end loop;
end;
$fn$
"""


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, shape: benchgen.Shape, out: Callable[[str], None] = print,
                 skip: frozenset[str] = frozenset(), json_path: str | None = None):
        self.settings = bench_settings(settings)
        self.shape = shape
        self.out = out
        self.skip = skip
        self.wh = None
        self.memory: MemorySampler | None = None
        self.stages: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}
        self.ledger_rows = 0
        self.json_path = json_path
        self.started = time.monotonic()
        self.load_before = os.getloadavg()

    # -- helpers -----------------------------------------------------------------------------------
    def _stage(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if name in self.skip:
            result = missing("skipped by the caller")
        else:
            self.out(f"  … {name}")
            self.memory.begin_stage()
            # On a terminal, a timed line on stderr; the figures are the stage's own timings, not this one.
            with stage(f"bench {name}") as shown:
                try:
                    result = fn()
                except Exception as exc:  # a failed stage is reported, and the others still run
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    result = missing(f"failed: {type(exc).__name__}: {first[:300]}")
                shown.note(_progress_note(result))
            if not result.get("missing"):
                result["peak_rss_mb"] = _mb(self.memory.stage_peak)
        self.stages[name] = result
        self.write_partial()
        return result

    def write_partial(self) -> None:
        """The figures so far, so a long run (10M) that is stopped still leaves what it measured."""
        if self.json_path:
            pending = missing("not run yet (the bench is still running or was stopped)")
            figures = self.figures(pending, pending)
            figures["complete"] = False
            Path(self.json_path).write_text(json.dumps(figures, indent=2, default=str) + "\n")

    @property
    def can_temp(self) -> bool:
        """dbt-postgres builds increments (and unit tests) through temporary tables."""
        with self.wh.connect("transformer") as conn:
            return bool(conn.execute("select has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0])

    def dbt_vars(self) -> list[str]:
        # Only when the grants rule incremental builds out: otherwise the project's own vars hold.
        return [] if self.can_temp else ["--vars", "{valuation_incremental: false, ledger_incremental: false}"]

    def _postmaster_pid(self) -> int | None:
        info = self.wh.embedded.info() if self.wh is not None and self.wh.embedded is not None else None
        return info.pid if info else None

    # -- stages ------------------------------------------------------------------------------------
    def load(self) -> None:
        """Reference data, then the history: the first rows through the import path (extract_file),
        the rest straight into raw.file_movements with COPY as the loader."""
        from orchestration.lib import raw

        sample_size = min(self.shape.movements, FILE_SAMPLE_ROWS)
        with stage(f"bench generate (reference data, first {sample_size:,} movements)"):
            refs = benchgen.reference_rows(self.shape)
            with self.wh.connect("loader") as conn, conn.transaction():
                for kind, rows in refs.items():
                    raw.load_file_rows(conn, kind, rows, f"bench-{kind}")
            rows = benchgen.movements(self.shape)
            sample = list(itertools.islice(rows, sample_size))
        self._stage("extract_file", lambda: self._extract_file(sample))
        if self.stages["extract_file"].get("missing"):  # the import path failed: land the sample by COPY
            rest, expected = itertools.chain(sample, rows), self.shape.movements
        else:
            rest, expected = rows, self.shape.movements - len(sample)
        with stage(f"bench generate + COPY ({expected:,} movements)"):
            self.memory.begin_stage()
            started = time.monotonic()
            with self.wh.connect("loader") as conn, conn.transaction():
                copied = benchgen.copy_movements(conn, rest, f"bench-{uuid.uuid4().hex[:12]}", total=expected or None)
            seconds = time.monotonic() - started
            with self.wh.admin_connect(autocommit=True) as conn:
                conn.execute("analyze raw.file_movements")
        self.extra["generate_and_copy"] = {
            "rows": copied, "seconds": round(seconds, 3), "rows_per_second": round(copied / seconds) if copied else None,
            "peak_rss_mb": _mb(self.memory.stage_peak),
            "what": "rows generated in Python and streamed into raw.file_movements with COPY as the loader (not extract_file)",
        }
        self.out(f"  generated and copied {copied:,} movements in {seconds:.1f}s")

    def _extract_file(self, sample: list[tuple]) -> dict[str, Any]:
        from orchestration.lib.importer import import_file

        path = benchgen.write_csv(self.settings.home / "work" / "movements-sample.csv", sample)
        started = time.monotonic()
        report = import_file(self.wh, "movements", path, source=benchgen.SOURCE)
        seconds = time.monotonic() - started
        if report.loaded != len(sample):
            raise BenchError(f"import loaded {report.loaded} of {len(sample)} rows ({report.reasons})")
        return {"seconds": round(seconds, 3), "rows_per_second": round(report.loaded / seconds), "rows": report.loaded,
                "what": f"orchestration.lib.importer.import_file on a canonical CSV of the first {len(sample):,} generated "
                        "movements (parse, validate, insert, one transaction); the rest are loaded by COPY"}

    def extract_http(self) -> dict[str, Any]:
        from orchestration.lib.channels import SquareClient
        from orchestration.lib.channels.base import MovementCursor
        from orchestration.lib.extract import extract_stream
        from simulator import Scenario, World
        from simulator.server import start_simulators

        target = min(HTTP_ROWS, max(500, self.shape.movements // 20))
        world = World(Scenario(seed=self.shape.seed, skus=max(50, target * 2000 // 7600), days=14))
        changes = len(world.square_changes)
        token = f"bench-{uuid.uuid4().hex}"
        # A generous rate limit: the figure is the client's and loader's throughput, not Square's quota.
        options = {"square": {"token": token, "rate": 100_000.0, "burst": 100_000.0}}
        with start_simulators(world, options=options) as sims:
            client = SquareClient(sims.base_urls["square"], token,
                                  location_ids=sorted(world.catalog.square_locations.values()))

            def read(cursor):
                return client.read_movements(MovementCursor.from_json(json.dumps(cursor)) if cursor else None)

            with client:
                started = time.monotonic()
                result = extract_stream(lambda: self.wh.connect("loader"), "square", "inventory_changes", read)
                seconds = time.monotonic() - started
        # Keep the dbt build on the generated retailer only.
        with self.wh.admin_connect(autocommit=True) as conn:
            conn.execute("truncate raw.square_inventory_changes")
            conn.execute("delete from ops.extract_cursors where channel = 'square'")
        if result.inserted != changes:
            raise BenchError(f"extracted {result.inserted} of the simulator's {changes} changes")
        return {"seconds": round(seconds, 3), "rows_per_second": round(result.received / seconds), "rows": result.received,
                "what": "SquareClient.read_movements (HTTP, 1,000 per page) + extract_stream into raw.square_inventory_changes "
                        "from the local Square simulator, rate limit lifted; the rows are truncated afterwards"}

    def dbt_build_full(self) -> dict[str, Any]:
        seconds, proc, results = _dbt(self.settings, self.wh, "build", "--full-refresh", *BUILD_SELECTION, *self.dbt_vars())
        summary = _dbt_summary(proc, results)
        if not results:
            raise BenchError(f"dbt build produced no results (exit {proc.returncode}): {summary.get('detail', '')}")
        try:  # the ledger may be there even when something downstream failed: the floor and the loop use it
            self.ledger_rows = _admin_scalar(self.wh, "select count(*) from intermediate.int_movements_unified") or 0
        except Exception:
            self.ledger_rows = 0
        if broken := _broken(seconds, summary, proc):
            return broken
        self.extra["full_build_results"] = results
        return {"seconds": round(seconds, 3), "rows_per_second": round(self.shape.movements / seconds),
                "ledger_rows": self.ledger_rows, **summary,
                "what": "dbt build --full-refresh of the whole project (models and data tests; dbt unit tests excluded: they run on "
                        "fixtures, not on this data), dbt CLI, transformer role"}

    def valuation_full(self) -> dict[str, Any]:
        """The valuation model rebuilt on its own after the full build (nothing else running), timed by
        dbt's own execution_time for the node: the statement and its hooks, without dbt's start-up."""
        if not self.ledger_rows:
            return missing("needs the ledger built by dbt_build_full")
        wall, proc, results = _dbt(self.settings, self.wh, "run", "--full-refresh", "--select", "int_valuation_entries_posted")
        node = _node(results, VALUATION_NODE)
        if node is None:
            return missing(f"{VALUATION_NODE} is not in the dbt project (exit {proc.returncode})")
        if node.get("status") != "success":
            return missing(f"{VALUATION_NODE} did not build ({node.get('status')}: {str(node.get('message'))[:200]})")
        seconds = float(node["execution_time"])
        # Untimed: the valuation marts catch up with the valuation rebuilt alone (they follow it incrementally,
        # and after a rebuild of it they fill themselves again), with the view between them that the rebuild
        # dropped, so that incremental_cycle starts, as after dbt_build_full, from a project whose every model
        # is up to date.
        _, caught_up, _ = _dbt(self.settings, self.wh, "run", "--select", "int_movements_valued", *VALUATION_MARTS,
                               *self.dbt_vars())
        if caught_up.returncode:
            raise BenchError(f"the valuation marts did not catch up after valuation_full: {caught_up.stdout[-1500:]}")
        in_build = {}
        for name in ("int_valuation_entries_posted", *VALUATION_MARTS):
            m = _node(self.extra.get("full_build_results", []), f"model.inventory_sync.{name}")
            if m and m.get("status") == "success":
                in_build[name] = round(float(m["execution_time"]), 3)
        return {"seconds": round(seconds, 3), "rows_per_second": round(self.ledger_rows / seconds) if seconds else None,
                "dbt_wall_seconds": round(wall, 3), "seconds_inside_full_build": in_build,
                "what": "int_valuation_entries_posted alone (the one ordered pass: FIFO and AVCO together, cost lines, "
                        "open layers), `dbt run --full-refresh --select` it after the full build, timed by dbt's "
                        "execution_time for the node; seconds_inside_full_build are the same node and the valuation marts "
                        "as timed inside dbt_build_full, where other models run beside them"}

    def window_pass_floor(self) -> dict[str, Any]:
        if not self.ledger_rows:
            return missing("needs the ledger built by dbt_build_full")
        with self.wh.admin_connect(autocommit=True) as conn:
            conn.execute("create schema if not exists bench")
            conn.execute("drop table if exists bench.window_pass_floor")
            started = time.monotonic()
            conn.execute(
                "create table bench.window_pass_floor as"
                " select sku, location, event_id, sum(quantity_base) over ("
                "   partition by sku order by occurred_at, event_id collate \"C\", source_name collate \"C\""
                " ) as balance_quantity"
                " from intermediate.int_movements_unified"
            )
            seconds = time.monotonic() - started
            conn.execute("drop table bench.window_pass_floor")
        return {"seconds": round(seconds, 3), "rows_per_second": round(self.ledger_rows / seconds),
                "what": "one ordered window sum per SKU over intermediate.int_movements_unified, materialized as a table"}

    def python_loop(self) -> dict[str, Any]:
        if not self.ledger_rows:
            return missing("needs the ledger built by dbt_build_full")
        started = time.monotonic()
        with self.wh.connect("transformer") as conn, conn.cursor(name="bench_python_loop") as cur:
            cur.itersize = 10_000
            cur.execute(
                "select sku, location, movement_type, quantity_base, unit_cost_base, reference, event_id"
                " from intermediate.int_movements_unified"
                " order by sku, occurred_at, event_id collate \"C\", source_name collate \"C\""
            )
            count, fifo, avco = python_valuation(cur)
        seconds = time.monotonic() - started
        return {"seconds": round(seconds, 3), "rows_per_second": round(count / seconds), "rows": count,
                "inventory_value_fifo": str(round(fifo, 2)), "inventory_value_avco": str(round(avco, 2)),
                "what": "server-side cursor over the ordered ledger + a plain Python FIFO and AVCO loop in Decimal"}

    def plpgsql_loop(self) -> dict[str, Any]:
        if not self.ledger_rows:
            return missing("needs the ledger built by dbt_build_full")
        with self.wh.admin_connect(autocommit=True) as conn:
            conn.execute(PLPGSQL_LOOP)
            started = time.monotonic()
            count, fifo, avco = conn.execute("select * from pg_temp.bench_plpgsql_loop()").fetchone()
            seconds = time.monotonic() - started
        return {"seconds": round(seconds, 3), "rows_per_second": round(count / seconds), "rows": count,
                "inventory_value_fifo": str(round(fifo, 2)), "inventory_value_avco": str(round(avco, 2)),
                "what": "python_loop's FIFO and AVCO loop in PL/pgSQL, over the same ordered ledger, totals only (no "
                        "lineage, no entries written, no checkpoints): the least a valuation pass in PL/pgSQL costs"}

    def _late_cycle(self, batch_number: int) -> tuple[float, subprocess.CompletedProcess, dict[str, Any], list[tuple]]:
        """A batch of late events appended by COPY, then one `dbt build` without --full-refresh."""
        batch = benchgen.late_batch(self.shape, min(LATE_EVENTS, max(100, self.shape.movements // 10)), batch=batch_number)
        with self.wh.connect("loader") as conn, conn.transaction():
            benchgen.copy_movements(conn, iter(batch), f"bench-late-{uuid.uuid4().hex[:12]}")
        seconds, proc, results = _dbt(self.settings, self.wh, "build", *BUILD_SELECTION, *self.dbt_vars())
        summary = _dbt_summary(proc, results)
        if not results:
            raise BenchError(f"dbt build produced no results (exit {proc.returncode}): {summary.get('detail', '')}")
        return seconds, proc, summary, batch

    def incremental_cycle(self) -> dict[str, Any]:
        full = self.stages.get("dbt_build_full", {})
        if full.get("missing"):
            return missing("needs dbt_build_full")
        seconds, proc, summary, batch = self._late_cycle(1)
        if broken := _broken(seconds, summary, proc):
            return broken
        share = seconds / full["seconds"] if full.get("seconds") else None
        # A second batch on top of the first: it resumes from checkpoints an incremental build wrote, not the full
        # build's (untimed for the goal; a failing or broken build shows in the table).
        seconds_2, proc_2, summary_2, _ = self._late_cycle(2)
        second = _broken(seconds_2, summary_2, proc_2) or {
            "seconds": round(seconds_2, 3), **summary_2,
            "share_of_full": round(seconds_2 / full["seconds"], 4) if full.get("seconds") else None}
        return {"seconds": round(seconds, 3), "rows_per_second": round(len(batch) / seconds), "new_events": len(batch),
                "backdated_events": sum(1 for r in batch if r[1] < benchgen.ANCHOR.isoformat()),
                "share_of_full": round(share, 4) if share is not None else None,
                "transformer_has_temporary": self.can_temp, **summary, "second_cycle": second,
                "what": f"{len(batch):,} new events (a fifth back-dated up to 30 days) appended by COPY, then one `dbt build` "
                        "without --full-refresh; second_cycle: another such batch and build on top of it" + (
                        "" if self.can_temp else
                        "; the valuation runs as a full table (var valuation_incremental: false): the transformer "
                        "lacks TEMPORARY, which the valuation's incremental materialization needs")}

    def latency_and_oversells(self) -> tuple[dict[str, Any], dict[str, Any]]:
        cycle = self.stages.get("incremental_cycle", {})
        if cycle.get("missing") or not cycle.get("seconds"):
            reason = "needs a measured incremental_cycle (the cycle time drives the simulation)"
            return missing(reason), missing(reason)
        c = float(cycle["seconds"])
        opening, events = benchgen.trading_day(self.shape.seed)
        continuous = benchgen.simulate_day(opening, events, interval=c, duration=c)
        batch = benchgen.simulate_day(opening, events, interval=BATCH_INTERVAL, duration=c)
        lat = sorted(continuous.latencies)
        method = (f"deterministic simulation of a 12-hour trading day (benchgen.trading_day: 400 SKU-locations, "
                  f"{len(events):,} events, 50% of sale attempts at the master POS, 50% on two channels selling on "
                  f"published quantities), sync cycles taking the measured incremental_cycle time ({c:.1f}s); "
                  "not a live measurement of the push/sensor loop")
        latency = {"p50_seconds": round(statistics.quantiles(lat, n=100)[49], 3) if len(lat) > 1 else None,
                   "p95_seconds": round(statistics.quantiles(lat, n=100)[94], 3) if len(lat) > 1 else None,
                   "cycle_seconds": round(c, 3), "events": len(lat),
                   "method": method + "; latency = an event's time until the first cycle that started after it has "
                                      "published, back-to-back cycles"}
        oversells = {"continuous": continuous.oversells, "batch_15min": batch.oversells,
                     "accepted_sales_continuous": continuous.accepted_sales, "accepted_sales_batch": batch.accepted_sales,
                     "ratio": round(continuous.oversells / batch.oversells, 4) if batch.oversells else None,
                     "method": method + "; continuous = back-to-back cycles, batch = a cycle every 15 minutes; an "
                                        "oversell is a channel sale accepted on its published quantity that true stock "
                                        "could not cover"}
        return latency, oversells

    def live_loop(self, simulated_latency: dict[str, Any], simulated_oversells: dict[str, Any]):
        """Event-to-converged latency measured live: the demo retailer at LIVE_SKUS SKUs, in its own
        home and server, with live traffic and real sync cycles back to back (extract, dbt build, checks,
        push through the simulators' APIs), timed from outside on the simulators' truth
        (simulator.world.ConvergenceProbe). The simulated figures at the bench's scale stay beside it."""
        if "live" in self.skip:
            live = missing("skipped by the caller")
        else:
            live = self._live_demo()
        latency = {**(live if live.get("missing") else {k: live[k] for k in (
            "p50_seconds", "p95_seconds", "events", "unconverged", "after_first_cycle", "cycle_seconds", "method")}),
            "simulated_at_bench_scale": simulated_latency}
        oversells = {**simulated_oversells, "live_demo": live.get("oversells", live)}
        return latency, oversells

    def _live_demo(self) -> dict[str, Any]:
        from dataclasses import replace

        from orchestration.cli import prepare
        from orchestration.lib.demo import DemoState, run_demo
        from orchestration.lib.warehouse import EmbeddedPostgres

        home = self.settings.home.parent / "bench-live"
        if home.exists():
            EmbeddedPostgres(home).stop()
            shutil.rmtree(home)
        settings = replace(self.settings, home=home)
        saved = dict(os.environ)
        state = DemoState()
        try:
            prepare(settings, quiet=True)
            code = run_demo(settings, skus=LIVE_SKUS, max_cycles=LIVE_CYCLES, live_rate=LIVE_RATE,
                            out=lambda *_: None, state=state, traffic_cycles=LIVE_TRAFFIC_CYCLES)
        except Exception as exc:  # noqa: BLE001 - reported as missing, the bench goes on
            return missing(f"live demo failed: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            EmbeddedPostgres(home).stop()
            os.environ.clear()
            os.environ.update(saved)
        if code != 0:
            return missing(f"live demo exited {code}")
        figures = state.latency_figures()
        cycles = sorted(state.cycle_seconds)
        return {**figures, "cycle_seconds": {"median": round(statistics.median(cycles), 1) if cycles else None,
                                             "cycles": len(cycles)},
                "oversells": {"continuous": sum(state.oversells.values()), "by_channel": state.oversells,
                              "method": "counted live on the simulators during the same run"},
                "method": (f"live: the demo retailer at {LIVE_SKUS} SKUs ({LIVE_RATE:g} events/s of live traffic with "
                           f"its fault plan during the first {LIVE_TRAFFIC_CYCLES} sync cycles, then up to "
                           f"{LIVE_CYCLES} in all until converged, back to back, the first full and the next quick; "
                           "then the demo's completing build); latency = a stock change until every publishing "
                           "channel shows what policy says, sampled every 0.5 s on the simulators; unconverged = "
                           "changes still waiting at the end; after_first_cycle = the changes made once the first "
                           "cycle (the initial load of a week of history) had finished: the steady state")}

    # -- all of it ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from orchestration.lib.warehouse import EmbeddedPostgres

        shape = self.shape
        self.out(f"bench: {shape.movements:,} movements ({shape.skus:,} SKUs × {shape.locations} locations × "
                 f"{shape.days} days, seed {shape.seed})")
        self.out(f"bench: using its OWN embedded PostgreSQL in {self.settings.home} (wiped now, stopped at the end); "
                 "the configured warehouse is not touched")
        with stage("bench start PostgreSQL (its own, wiped)"):
            self.wh = open_bench_warehouse(self.settings)
        self.memory = MemorySampler(self._postmaster_pid).start()
        try:
            self.load()
            self._stage("extract_http", self.extract_http)
            self._stage("dbt_build_full", self.dbt_build_full)
            self._stage("valuation_full", self.valuation_full)
            self._stage("window_pass_floor", self.window_pass_floor)
            self._stage("python_loop", self.python_loop)
            self._stage("plpgsql_loop", self.plpgsql_loop)
            self._stage("incremental_cycle", self.incremental_cycle)
            with stage("bench latency + oversells (simulated day)"):
                latency, oversells = self.latency_and_oversells()
            with stage(f"bench live loop ({LIVE_SKUS} SKUs, live traffic, real sync cycles)"):
                latency, oversells = self.live_loop(latency, oversells)
        finally:
            self.memory.stop()
            EmbeddedPostgres(self.settings.home).stop()
        self.extra.pop("full_build_results", None)
        figures = self.figures(latency, oversells)
        figures["complete"] = True
        return figures

    def figures(self, latency: dict[str, Any], oversells: dict[str, Any]) -> dict[str, Any]:
        shape = self.shape
        return {
            "movements": shape.movements,
            "peak_rss_mb": _mb(self.memory.peak) if self.memory else None,
            "peak_pss_mb": _mb(self.memory.peak_pss) if self.memory else None,
            "stages": {name: self.stages.get(name, missing("not run")) for name in STAGES},
            "latency": latency,
            "oversells": oversells,
            "shape": {"skus": shape.skus, "locations": shape.locations, "days": shape.days, "seed": shape.seed},
            "generate_and_copy": self.extra.get("generate_and_copy", missing("not run")),
            "total_seconds": round(time.monotonic() - self.started, 1),
            "bench_home": str(self.settings.home),
            "cpus": os.cpu_count(),
            # other work on the machine skews every figure: the 1-minute load before and after the run
            "load_average_1min": {"before": round(self.load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        }


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "—"


def render(figures: dict[str, Any]) -> str:
    lines = [f"\n{'stage':<20} {'seconds':>10} {'rows/s':>12} {'peak RSS MB':>12}  note"]
    gen = figures.get("generate_and_copy", {})
    rows = [("(generate + COPY)", gen)] + [(name, figures["stages"][name]) for name in STAGES]
    for name, st in rows:
        if st.get("missing"):
            lines.append(f"{name:<20} {'missing':>10} {'':>12} {'':>12}  {st.get('reason', '')}")
            continue
        note = ""
        if name == "valuation_full":
            floor = figures["stages"]["window_pass_floor"].get("seconds")
            loop = figures["stages"]["python_loop"].get("seconds")
            parts = []
            if floor:
                parts.append(f"{st['seconds'] / floor:.1f}× the floor")
            if loop:
                ratio = loop / st["seconds"]
                parts.append(f"{ratio:.1f}× faster than the Python loop" if ratio >= 1
                             else f"{1 / ratio:.1f}× slower than the Python loop")
            note = ", ".join(parts)
        elif name == "plpgsql_loop" and figures["stages"]["window_pass_floor"].get("seconds"):
            note = f"{st['seconds'] / figures['stages']['window_pass_floor']['seconds']:.1f}× the floor, with no output"
        elif name == "incremental_cycle" and st.get("share_of_full") is not None:
            note = f"{st['share_of_full']:.1%} of the full build"
            second = st.get("second_cycle") or {}
            if second.get("missing"):
                note += f"; second cycle: {second['reason']}"
            elif second.get("seconds") is not None:
                note += f"; a second on top of it {second['seconds']:.1f}s"
            for which, cycle in (("", st), ("second: ", second)):
                if cycle.get("test_failures"):
                    note += f" ({which}{cycle['test_failures']} failing tests)"
        elif name == "dbt_build_full" and (st.get("errors") or st.get("test_failures")):
            note = f"{st.get('errors')} errors, {st.get('test_failures')} failing tests"
        lines.append(f"{name:<20} {_fmt(st.get('seconds'), '>10.1f')} {_fmt(st.get('rows_per_second'), '>12,')} "
                     f"{_fmt(st.get('peak_rss_mb'), '>12,.0f')}  {note}")
    lat, ov = figures["latency"], figures["oversells"]
    if lat.get("missing"):
        lines.append(f"{'latency (live)':<20} missing: {lat['reason']}")
    elif lat.get("p50_seconds") is not None:
        cyc = lat.get("cycle_seconds") or {}
        lines.append(f"{'latency (live)':<20} p50 {lat['p50_seconds']:.1f}s, p95 {lat['p95_seconds']:.1f}s over "
                     f"{lat['events']} changes ({lat['unconverged']} unconverged; demo retailer at {LIVE_SKUS} SKUs, "
                     f"median cycle {_fmt(cyc.get('median'), '.1f')}s)")
        steady = lat.get("after_first_cycle") or {}
        if steady.get("p50_seconds") is not None:
            lines.append(f"{'  after 1st cycle':<20} p50 {steady['p50_seconds']:.1f}s, p95 {steady['p95_seconds']:.1f}s over "
                         f"{steady['events']} changes ({steady['unconverged']} unconverged): the steady state, quick cycles only")
    sim = lat.get("simulated_at_bench_scale") or {}
    if sim.get("missing"):
        lines.append(f"{'latency (at scale)':<20} missing: {sim['reason']}")
    elif sim:
        lines.append(f"{'latency (at scale)':<20} p50 {sim['p50_seconds']:.1f}s, p95 {sim['p95_seconds']:.1f}s "
                     f"(simulated, cycle {sim['cycle_seconds']:.1f}s at this history's size)")
    if ov.get("missing"):
        lines.append(f"{'oversells':<20} missing: {ov['reason']}")
    else:
        live = ov.get("live_demo") or {}
        live_note = f"; live demo run: {live['continuous']}" if "continuous" in live else ""
        lines.append(f"{'oversells':<20} continuous {ov['continuous']}, 15-minute batches {ov['batch_15min']} "
                     f"(simulated day){live_note}")
    load = figures["load_average_1min"]
    lines.append(f"peak memory of the process tree (bench, dbt, PostgreSQL): RSS {figures['peak_rss_mb']:,.0f} MB "
                 f"(shared buffers counted per process), PSS {figures['peak_pss_mb']:,.0f} MB; "
                 f"total {figures['total_seconds']:.0f}s on {figures['cpus']} CPUs "
                 f"(1-minute load {load['before']} before, {load['after']} after)")
    return "\n".join(lines)


def run_bench(settings: Settings, movements: int | None = 1_000_000, json_path: str | None = None, *,
              skus: int | None = None, locations: int | None = None, days: int | None = None, seed: int = 42,
              skip: frozenset[str] = frozenset(), out: Callable[[str], None] = print) -> int:
    """The CLI entry: generate, run every stage, print the table, write the JSON. Exit 0 when every
    stage ran, 1 when some are missing, 2 when the bench could not run."""
    from orchestration.lib.warehouse import WarehouseError

    try:
        shape = benchgen.Shape.build(movements, skus, locations, days, seed)
    except ValueError as exc:
        out(f"inventory-sync: error: {exc}")
        return 2
    try:
        figures = Bench(settings, shape, out=out, skip=skip, json_path=json_path).run()
    except (BenchError, WarehouseError) as exc:
        out(f"inventory-sync: error: bench: {exc}")
        return 2
    out(render(figures))
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2, default=str) + "\n")
        out(f"figures written to {json_path}")
    return 0 if not any(st.get("missing") for st in figures["stages"].values()) else 1
