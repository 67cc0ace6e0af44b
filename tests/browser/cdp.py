"""A minimal Chrome DevTools Protocol driver for headless Chromium (Debian's `chromium` package).

No browser download and no Selenium: Chromium is started with `--remote-debugging-port=0` (it writes
the port it chose to DevToolsActivePort in its profile directory), a page target is created over HTTP,
and the page is driven over its websocket with `websockets`' synchronous client. Every JavaScript
exception and console error the page raises is collected so tests can fail on them.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-allow-origins=*", "--window-size=1600,1000",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class PageError(AssertionError):
    pass


class Page:
    """One tab: navigate, evaluate JavaScript, wait for a condition, take screenshots."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, open_timeout=20)
        self._ids = itertools.count(1)
        self.errors: list[str] = []  # uncaught exceptions and console errors, in order
        self.failed_requests: list[str] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ws.close()

    def _on_event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                            for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            e = params["entry"]
            self.errors.append(f"log {e.get('source')}: {e.get('text')} {e.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.failed_requests.append(f"{params.get('errorText')} ({params.get('type')})")

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {method} within {timeout}s")
            message = json.loads(self._ws.recv(timeout=remaining))
            if message.get("id") == msg_id:
                if "error" in message:
                    raise PageError(f"{method} failed: {message['error']}")
                return message.get("result", {})
            self._on_event(message)

    def pump(self, seconds: float = 0.0) -> None:
        """Read pending events (exceptions, console errors) for up to `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                message = json.loads(self._ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                return
            self._on_event(message)
            if time.monotonic() >= deadline:
                return

    def evaluate(self, expression: str, timeout: float = 60):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise PageError(f"evaluating {expression[:80]!r}: {d.get('exception', {}).get('description') or d.get('text')}")
        return result.get("result", {}).get("value")

    def navigate(self, url: str, timeout: float = 60) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise PageError(f"cannot open {url}: {result['errorText']}")
        self.wait_for("document.readyState === 'complete'", timeout=timeout, what=f"{url} to load")

    def wait_for(self, expression: str, timeout: float = 60, what: str | None = None):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(PageError):
                last = self.evaluate(expression)
                if last:
                    return last
            self.pump(0.25)
        text = ""
        with contextlib.suppress(Exception):
            text = (self.evaluate("document.body ? document.body.innerText : ''") or "")[:1500]
        raise TimeoutError(f"waited {timeout}s for {what or expression}; page text:\n{text}")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def click(self, selector: str) -> None:
        found = self.evaluate(f"(function(){{var e=document.querySelector({json.dumps(selector)});"
                              "if(!e){return false;} e.scrollIntoView({block:'center'}); e.click(); return true;})()")
        if not found:
            raise PageError(f"nothing to click at {selector}")

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize")
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": size["width"],
                                                             "height": min(size["height"], 12000), "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


class Chromium:
    """A headless Chromium with its own throw-away profile; `new_page()` opens a tab."""

    def __init__(self, executable: str, log_dir: Path):
        self.profile = Path(tempfile.mkdtemp(prefix="inventory-sync-chromium-"))
        self.log = (log_dir / "chromium.log").open("w")
        self.proc = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start (exit {self.proc.returncode}); see {log_dir / 'chromium.log'}")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        self.pages: list[Page] = []

    def new_page(self) -> Page:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=20) as resp:  # noqa: S310 - local DevTools endpoint
            target = json.load(resp)
        page = Page(target["webSocketDebuggerUrl"])
        self.pages.append(page)
        return page

    def close(self) -> None:
        for page in getattr(self, "pages", []):
            page.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
