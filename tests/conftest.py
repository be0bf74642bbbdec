"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pools():
    from mlrobust.data.source import load_pools

    return load_pools()
