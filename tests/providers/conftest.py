"""Fixtures of the EMQX provider tests (lifecycle and drift) run against the API double."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_provider_helpers import CASES, Case


@pytest.fixture(params=["5.8", "6.x"])
def broker(request: pytest.FixtureRequest) -> Iterator[EmqxDouble]:
    """A fresh double per test, for each API behaviour (rule PUT, settings defaults, caches)."""
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=request.param).start()
    yield double
    double.stop()


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    """Each provider's create/read/update props and how the dashboard drifts it."""
    return request.param
