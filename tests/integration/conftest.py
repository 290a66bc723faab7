"""Pytest settings for the integration stack test."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The stack test carries a generous time limit; without pytest-timeout the mark is only documentation.
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line("markers", "timeout(seconds): per-test time limit (enforced by pytest-timeout)")
