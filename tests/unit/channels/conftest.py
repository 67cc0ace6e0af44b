"""Fixtures for the channel client unit tests."""

import pytest
from channel_fakes import Sleeps


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
