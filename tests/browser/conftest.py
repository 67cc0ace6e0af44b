"""Browser tests: headless Chromium (Debian's `chromium` package) driven over the DevTools protocol.

When Chromium is not installed the tests are skipped with the reason printed, never passed silently;
`make test` installs it first on a fresh Debian machine. Screenshots go to each test's `tmp_path`.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.browser.cdp import Chromium, find_chromium

pytestmark = pytest.mark.browser

MISSING = ("Chromium is not installed (no chromium/chromium-browser on PATH): the browser tests need Debian's "
           "`chromium` package; install it with `apt-get install -y chromium` (make test does this when it can)")


def skip_reason() -> tuple[str | None, str | None]:
    """(chromium path, None) when the browser tests can run, else (None, why not)."""
    path = find_chromium()
    if path is None:
        return None, MISSING
    if importlib.util.find_spec("websockets") is None:
        return None, "the Python package websockets is not installed (pip install 'websockets>=13'): it drives Chromium"
    return path, None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path, reason = skip_reason()
    if reason:
        print(f"\nSKIPPED browser tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return path


@pytest.fixture
def browser(chromium_path, tmp_path):
    b = Chromium(chromium_path, tmp_path)
    yield b
    b.close()


@pytest.fixture
def page(browser):
    return browser.new_page()
