"""`python -m simulator`: one JSON line of base URLs, serves until SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

# One pooled client per module: a fresh httpx client per call costs ~30 ms of TLS setup.
HTTP = httpx.Client(timeout=10)

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_simulator_prints_urls_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--skus",
            "10",
            "--days",
            "2",
            "--faults",
            "demo",
            "--write-files",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls = json.loads(proc.stdout.readline())
        assert set(urls) == {"shopify", "square", "amazon", "shiphero", "toast"}
        assert all(u.startswith("http://127.0.0.1:") for u in urls.values())
        assert HTTP.get(urls["toast"] + "/__faults").json()["apply_then_drop_rate"] > 0
        assert (tmp_path / "movements.csv").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == "", "exactly one line"
    finally:
        proc.kill()
