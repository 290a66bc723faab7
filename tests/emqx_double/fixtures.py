"""Pytest fixtures for the EMQX API double; test modules import them explicitly:

    from tests.emqx_double.fixtures import *  # noqa: F403 (the emqx and emqx_6x fixtures)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emqx_double.server import EmqxDouble

__all__ = ["emqx", "emqx_6x"]

API_KEY = "test-key"
API_SECRET = "test-secret-9f2c"


@pytest.fixture()
def emqx() -> Iterator[EmqxDouble]:
    """A fresh EMQX 5.8 double per test, on its own ephemeral loopback port."""
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version="5.8").start()
    yield double
    double.stop()


@pytest.fixture()
def emqx_6x() -> Iterator[EmqxDouble]:
    """The same double with the 6.x behaviours (rule PUT 404 + merge, no_match deny default)."""
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version="6.x").start()
    yield double
    double.stop()
