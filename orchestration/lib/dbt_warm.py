"""A warm dbt: dbt-core imported once, every invocation forked from that process.

A `dbt` process spends about 3 s of CPU importing dbt-core and its Postgres adapter before it reads its
arguments, on every invocation: a sixth of a quick sync cycle. Long-running callers (the demo's loop, the
bench's live loop, `inventory-sync dev`, the test session) start one server with `warm_dbt()`; it
imports dbt once and then, for each invocation, forks a child that runs the dbt CLI exactly as the `dbt`
executable would: the invocation's own arguments, working directory and environment, its output on the
caller's stdout, its exit code. Nothing else is shared: the server never runs dbt itself, so every child
starts from the same freshly imported state a new `dbt` process would have.

The executable dagster-dbt and every other caller run is `inventory-sync-dbt` (`client_main`). With
INVENTORY_SYNC_DBT_SERVER naming a live server's socket it sends the invocation there, forwards SIGINT and
SIGTERM to the child (dagster-dbt interrupts dbt with SIGINT) and exits with the child's code; without one
(or when the server is gone or was started from another environment) it becomes the real `dbt`
(`os.execv`), so behaviour never depends on the server, only speed.

Wire format on the Unix socket (the socket file is private to the user): the client sends one JSON line
{argv, cwd, env, prefix}; the child answers `\\0PID <pid>\\n`, then dbt's stdout and stderr bytes as they
come, then `\\0EXIT <code>\\n`. dbt's output never contains a NUL byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

ENV = "INVENTORY_SYNC_DBT_SERVER"
IDLE_SECONDS = 600  # a server nobody used for this long exits (also when the process that started it died)
PRELOAD = (  # what every dbt build imports; measured with `python -X importtime` on a build
    "dbt.cli.main", "dbt.adapters.postgres", "dbt.adapters.postgres.impl", "dbt.task.build", "dbt.task.run",
    "dbt.task.test", "dbt.task.seed", "dbt.task.list", "dbt.parser.manifest", "dbt.compilation",
    "dbt.context.providers", "dbt.graph", "psycopg2", "google.protobuf.descriptor_pb2",
)


def _warm_class_caches() -> None:
    """Fill the class-level caches every invocation fills first (~0.25 s of each child's CPU): the JSON
    schemas dbt validates its project, profile and selector files against, and the (de)serializers
    mashumaro generates for the manifest's classes. Nothing here reads a project or runs dbt."""
    from dbt.adapters.postgres.connections import PostgresCredentials
    from dbt.contracts.graph.manifest import Manifest
    from dbt.contracts.project import Configuration, PackageConfig, ProfileConfig, Project, ProjectFlags
    from dbt.contracts.selection import SelectorFile

    for cls in (ProjectFlags, ProfileConfig, Project, PackageConfig, Configuration, SelectorFile, PostgresCredentials):
        cls.json_schema()
    Manifest.from_msgpack(Manifest().to_msgpack())


def real_dbt() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


# -- client ------------------------------------------------------------------------------------------


def client_main() -> None:
    """The `inventory-sync-dbt` executable: `dbt` through the warm server when there is one."""
    argv = sys.argv[1:]
    path = os.environ.get(ENV)
    sock = None
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            sock = None
    if sock is None:
        _become_real_dbt(argv)
    header = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "prefix": sys.prefix}
    sock.sendall(json.dumps(header).encode() + b"\n")
    sys.exit(_relay(sock, argv))


def _become_real_dbt(argv: list[str]) -> None:
    dbt = real_dbt()
    os.execvp(dbt, [dbt, *argv])  # noqa: S606 - becoming dbt itself, with the caller's argv


def _relay(sock: socket.socket, argv: list[str]) -> int:
    """Copy the child's output to stdout until its exit code arrives; forward signals to it."""
    buffer = b""
    child = None
    while child is None:  # the first frame: the child's pid, or STALE (server from another environment)
        chunk = sock.recv(256)
        if not chunk:
            _become_real_dbt(argv)  # the server went away before forking: nothing ran yet
        buffer += chunk
        if b"\n" in buffer:
            frame, buffer = buffer.split(b"\n", 1)
            if frame != b"\0STALE" and frame.startswith(b"\0PID "):
                child = int(frame[5:])
            else:
                sock.close()
                _become_real_dbt(argv)

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    out = sys.stdout.buffer
    tail = buffer
    while True:
        nul = tail.find(b"\0")
        if nul >= 0:
            out.write(tail[:nul])
            out.flush()
            control = tail[nul:]
            while not control.endswith(b"\n"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                control += chunk
            if control.startswith(b"\0EXIT "):
                return int(control[6:].strip() or 1)
            break
        out.write(tail)
        out.flush()
        tail = sock.recv(65536)  # a forwarded signal does not interrupt it (PEP 475)
        if not tail:
            break
    sys.stderr.write("inventory-sync-dbt: the warm dbt server ended the invocation without an exit code\n")
    return 1


# -- server ------------------------------------------------------------------------------------------


def serve(path: str, idle_seconds: float = IDLE_SECONDS) -> None:
    """Import dbt, listen on `path`, fork a child per invocation. Ends on SIGTERM, after `idle_seconds`
    without an invocation, or when the process that started it is gone."""
    import importlib

    parent = os.getppid()

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(Exception):  # only ever a speed-up: a child fills what is missing itself
        _warm_class_caches()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    old_umask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(16)
    listener.settimeout(5.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    idle = 0.0
    try:
        while idle < idle_seconds and os.getppid() == parent:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                idle += listener.gettimeout()
                continue
            idle = 0.0
            if os.fork() == 0:
                listener.close()
                _child(conn)  # never returns
            conn.close()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _child(conn: socket.socket) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        conn.settimeout(None)
        header = json.loads(conn.makefile("rb").readline())
        if header.get("prefix") != sys.prefix:
            conn.sendall(b"\0STALE\n")
            os._exit(0)
        conn.sendall(b"\0PID %d\n" % os.getpid())
        os.chdir(header["cwd"])
        os.environ.clear()
        os.environ.update(header["env"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(conn.fileno(), 1)
        os.dup2(conn.fileno(), 2)
        sys.argv = ["dbt", *header["argv"]]
        from dbt.cli.main import cli

        try:
            cli(prog_name="dbt")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported to the caller, who gets a non-zero exit
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            os.write(1, b"\0EXIT %d\n" % code)
        os._exit(0)


@contextlib.contextmanager
def warm_dbt(directory: Path | None = None):
    """Start a warm dbt server for the block and point every dbt invocation of this process and its
    children at it (INVENTORY_SYNC_DBT_SERVER). A server already named in the environment is reused."""
    import subprocess
    import tempfile
    import time

    if os.environ.get(ENV) and Path(os.environ[ENV]).exists():
        yield os.environ[ENV]
        return
    folder = Path(tempfile.mkdtemp(prefix="isdbt-", dir=directory))  # short: socket paths max ~100 bytes
    path = str(folder / "s")
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.lib.dbt_warm", path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = os.environ.get(ENV)
    try:
        deadline = time.monotonic() + 30
        while not Path(path).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(path).exists():
            os.environ[ENV] = path
        yield path if Path(path).exists() else None
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(OSError):
            os.unlink(path)
            folder.rmdir()


if __name__ == "__main__":
    serve(sys.argv[1])
