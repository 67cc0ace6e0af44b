"""The command line (DESIGN §4): `inventory-sync COMMAND`.

Each command prints what it did; errors are one line on stderr saying what was wrong and what to do,
with a non-zero exit code. The process environment for dbt and Dagster (which role, which port, which
Dagster home) is assembled here and only here.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

from orchestration.settings import DBT_PROJECT_DIR, PROJECT_ROOT, Settings

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


class CliError(RuntimeError):
    """A user-facing failure: printed as one line, exit code 2."""


# --------------------------------------------------------------------------------------------------
# Runtime environment
# --------------------------------------------------------------------------------------------------


def dagster_yaml() -> str:
    return (
        "# Written by inventory-sync setup: run, event and schedule storage in the warehouse's PostgreSQL.\n"
        "storage:\n"
        "  postgres:\n"
        "    postgres_url:\n"
        "      env: INVENTORY_SYNC_DAGSTER_PG_URL\n"
        "run_coordinator:\n"
        "  module: dagster.core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n"
        "  config:\n"
        "    max_concurrent_runs: 4\n"
        "telemetry:\n"
        "  enabled: false\n"
    )


def runtime_env(settings: Settings, wh) -> dict[str, str]:
    """Variables dbt (profiles.yml) and Dagster (dagster.yaml) read: the transformer role, Dagster home."""
    ep = wh.endpoint
    return {
        "INVENTORY_SYNC_HOME": str(settings.home),
        "DAGSTER_HOME": str(settings.dagster_home),
        "INVENTORY_SYNC_PG_HOST": ep.host,
        "INVENTORY_SYNC_PG_PORT": str(ep.port),
        "INVENTORY_SYNC_PG_DATABASE": ep.database,
        "INVENTORY_SYNC_PG_USER": wh.role_name("transformer"),
        "INVENTORY_SYNC_PG_PASSWORD": wh.password("transformer"),
        "INVENTORY_SYNC_DAGSTER_PG_URL": wh.dagster_url(),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def prepare(settings: Settings, quiet: bool = False, parse: bool = True):
    """Start (or reuse) the warehouse, bootstrap it, create raw tables, write dagster.yaml, parse dbt."""
    from orchestration.lib import raw
    from orchestration.lib.dbt import ensure_manifest
    from orchestration.lib.registry import load_registry
    from orchestration.lib.warehouse import open_warehouse

    wh = open_warehouse(settings)
    with wh.connect("loader") as conn:
        raw.ensure_file_tables(conn)
        raw.ensure_api_tables(conn, load_registry(settings.channels_file))
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    (settings.dagster_home / "dagster.yaml").write_text(dagster_yaml())
    os.environ.update(runtime_env(settings, wh))
    if parse:
        ensure_manifest()
    if not quiet:
        where = "embedded PostgreSQL" if wh.embedded else "external PostgreSQL"
        print(f"warehouse ready: {where} on {wh.endpoint.host}:{wh.endpoint.port}, database {wh.endpoint.database}")
    return wh


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def cmd_setup(args, settings: Settings) -> int:
    prepare(settings)
    print(f"Dagster home: {settings.dagster_home}")
    return EXIT_OK


def cmd_db(args, settings: Settings) -> int:
    from orchestration.lib.warehouse import ROLES, Warehouse

    if args.action == "stop":
        stopped = Warehouse(settings).stop()
        print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
        return EXIT_OK
    if args.action == "status":
        wh = Warehouse(settings)
        if wh.embedded is None:
            print(f"external PostgreSQL: {wh.start().host}:{wh.endpoint.port}")
            return EXIT_OK
        info = wh.embedded.info()
        print(f"embedded PostgreSQL running on 127.0.0.1:{info.port} (pid {info.pid})" if info else "embedded PostgreSQL not running")
        return EXIT_OK if info else EXIT_PARTIAL
    wh = prepare(settings, quiet=True)
    if args.action == "url":
        if args.role not in ROLES:
            raise CliError(f"unknown role {args.role!r}; one of {', '.join(ROLES)}")
        print(wh.url(args.role))
    else:  # start
        print(f"embedded PostgreSQL on 127.0.0.1:{wh.endpoint.port}" if wh.embedded else "external PostgreSQL reachable")
    return EXIT_OK


def cmd_query(args, settings: Settings) -> int:
    import psycopg

    wh = prepare(settings, quiet=True)
    text = args.sql if args.sql != "-" else sys.stdin.read()
    try:
        with wh.connect(args.role) as conn:
            conn.read_only = True
            with conn.cursor() as cur:
                cur.execute(text)
                if cur.description is None:
                    return EXIT_OK
                writer = csv.writer(sys.stdout, lineterminator="\n")
                writer.writerow([c.name for c in cur.description])
                for row in cur:
                    writer.writerow(["" if v is None else v for v in row])
    except psycopg.Error as exc:
        raise CliError(f"query failed: {str(exc).strip().splitlines()[0]}") from None
    return EXIT_OK


def cmd_import(args, settings: Settings) -> int:
    from orchestration.lib.importer import import_file
    from orchestration.lib.registry import load_registry

    wh = prepare(settings, quiet=True)
    layouts = load_registry(settings.channels_file).file_layouts
    report = import_file(wh, args.kind, Path(args.path), source=args.source, layouts=layouts)
    print(report.summary())
    return EXIT_OK if report.quarantined == 0 else EXIT_PARTIAL


def cmd_run(args, settings: Settings) -> int:
    from orchestration.lib.runner import run_cycle

    prepare(settings, quiet=True)
    # A quick cycle leaves the advisory checks (they gate nothing) to advisory_checks_job, run next.
    advise = args.quick
    result = run_cycle(settings, push=not args.no_push, quick=args.quick, data_docs=not advise)
    print(result.summary())
    if advise:
        from orchestration.defs.sync.factory import ADVISORY_JOB

        advisory = run_cycle(settings, job_name=ADVISORY_JOB)
        print(advisory.summary("advisory checks"))
    return EXIT_OK if result.success else EXIT_ERROR


def cmd_demo(args, settings: Settings) -> int:
    from orchestration.lib.demo import run_demo

    prepare(settings)
    return run_demo(settings, skus=args.skus, seed=args.seed, max_cycles=args.cycles)


def cmd_simulate(args, settings: Settings) -> int:
    try:
        from simulator.server import main as simulate_main
    except ImportError as exc:
        raise CliError(f"the simulator is not available ({exc})") from None
    return simulate_main(args.rest) or EXIT_OK


def cmd_dev(args, settings: Settings) -> int:
    from orchestration.lib.dbt_warm import warm_dbt

    prepare(settings)
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster if dagster.exists() else "dagster"), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
           "--host", args.host, "--port", str(args.port)]
    print(f"Dagster UI: http://{args.host}:{args.port}  (Ctrl-C to stop)")
    with warm_dbt():  # the runs the daemon launches build through it (orchestration.lib.dbt_warm)
        return subprocess.call(cmd, env={**os.environ}, cwd=PROJECT_ROOT)


def cmd_bench(args, settings: Settings) -> int:
    from orchestration.lib.bench import run_bench

    # The bench starts its own embedded server under $INVENTORY_SYNC_HOME/bench: it never touches real data.
    return run_bench(settings, movements=args.movements, json_path=args.json, skus=args.skus,
                     locations=args.locations, days=args.days, seed=args.seed,
                     skip=frozenset() if args.live else frozenset({"live"}))


def cmd_dbt(args, settings: Settings) -> int:
    """Run dbt with this instance's connection (e.g. `inventory-sync dbt docs generate`)."""
    from orchestration.lib.dbt import dbt_executable

    prepare(settings, quiet=True, parse=False)
    return subprocess.call([dbt_executable(), *args.rest, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)])


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from orchestration.lib.files import KINDS

    p = argparse.ArgumentParser(prog="inventory-sync", description="Keep stock levels true across every sales channel.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("demo", help="run the whole loop on the demo retailer and print a summary")
    s.add_argument("--skus", type=int, default=2000, help="SKUs in the demo retailer (default 2,000)")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--cycles", type=int, default=6, help="most sync cycles to run before the summary (default 6)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("run", help="one sync cycle: extract → dbt build → checks → corrections")
    s.add_argument("--no-push", action="store_true", help="plan corrections but do not push them")
    s.add_argument("--quick", action="store_true",
                   help="the quick path: rebuild only what corrections and the blocking checks depend on, "
                        "run the GX checks and the outbound marts' dbt tests (the sensors' refresh runs do this)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("import", help="load a CSV file as a source (bad rows are quarantined)")
    s.add_argument("kind", choices=KINDS, metavar="KIND", help=f"one of: {', '.join(KINDS)}")
    s.add_argument("path", metavar="PATH")
    s.add_argument("--source", default="file", help="where the rows come from (e.g. erp); a source with a layout in channels.yaml (touchbistro, sumup) is read in its export format")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("query", help="run read-only SQL, print CSV with a header")
    s.add_argument("sql", metavar="SQL", help="the SQL text, or - to read it from stdin")
    s.add_argument("--role", default="analyst", choices=("analyst", "finance"), help="role to query as (default analyst)")
    s.set_defaults(func=cmd_query)

    s = sub.add_parser("simulate", help="run the channel simulators in the foreground (prints base URLs)", add_help=False)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("bench", help="the benchmark: stage timings, rows/s, peak memory (its own server)")
    s.add_argument("--movements", type=int, default=None, help="movements to generate (default 1,000,000)")
    s.add_argument("--skus", type=int, default=None, help="SKUs (default movements ÷ 1,000)")
    s.add_argument("--locations", type=int, default=None, help="locations, a fifth of them warehouses (default 20)")
    s.add_argument("--days", type=int, default=None, help="days of history (default 365)")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    s.add_argument("--no-live", dest="live", action="store_false",
                   help="skip the live loop (the demo retailer with live traffic and real cycles, ~4 minutes)")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("dev", help="dagster dev with this project's instance, database and workspace")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=3000)
    s.set_defaults(func=cmd_dev)

    s = sub.add_parser("setup", help="start/bootstrap the warehouse and prepare dbt and Dagster")
    s.set_defaults(func=cmd_setup)

    s = sub.add_parser("db", help="the embedded PostgreSQL: start, stop, status, url --role ROLE")
    s.add_argument("action", choices=("start", "stop", "status", "url"))
    s.add_argument("--role", default="analyst", help="for url: loader, transformer, pusher, analyst or finance")
    s.set_defaults(func=cmd_db)

    from orchestration.lib.review import add_sync_commands

    add_sync_commands(sub)

    from orchestration.lib.report import add_report_commands

    add_report_commands(sub)

    s = sub.add_parser("dbt", help="run dbt against this instance (arguments passed through)", add_help=False)
    s.set_defaults(func=cmd_dbt)
    return p


def main(argv: list[str] | None = None) -> int:
    import warnings

    from orchestration.lib.dbt import DbtProjectError
    from orchestration.lib.files import FileFormatError
    from orchestration.lib.registry import RegistryError
    from orchestration.lib.warehouse import WarehouseError

    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the server does not need it.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("simulate", "dbt"):  # their options belong to the simulator / dbt
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    settings = Settings.from_env()
    try:
        return args.func(args, settings)
    except (CliError, WarehouseError, FileFormatError, FileNotFoundError, DbtProjectError, RegistryError) as exc:
        print(f"inventory-sync: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

