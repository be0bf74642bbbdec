"""Shared fixtures."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI runs the same examples every time (reproducible); local runs explore new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def pools():
    from mlrobust.data.source import load_pools

    return load_pools()
