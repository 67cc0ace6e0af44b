"""Fixtures for the channel client unit tests."""

import pytest

from tests.unit.channels.channel_fakes import Sleeps


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
