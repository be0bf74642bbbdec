"""Shared fixtures, and `--device`: where bab's bound engine runs in the tests that take the
`device` fixture (cpu by default; `--device cuda` on a machine with a GPU runs the same
soundness and agreement properties there, see scripts/device_check.sh)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI runs the same examples every time (reproducible); local runs explore new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="torch device of bab's bound engine in the tests that take the `device` fixture",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            # asked for by name: running the properties on the CPU instead would pass and mislead
            raise pytest.UsageError(
                f"--device cuda: torch {torch.__version__} sees no CUDA device here; drop the option to test on the CPU"
            )


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> str:
    """The device the bab tests bound their domains on."""
    return str(request.config.getoption("--device"))


@pytest.fixture(scope="session")
def pools():
    from mlrobust.data.source import load_pools

    return load_pools()
