"""Without Chromium the browser tests skip and say why; they never pass silently."""

from __future__ import annotations

from tests.browser import cdp
from tests.browser.conftest import MISSING, skip_reason


def test_no_chromium_means_a_skip_with_the_reason(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cdp.find_chromium() is None
    assert skip_reason() == (None, MISSING)
    assert "apt-get install -y chromium" in MISSING
