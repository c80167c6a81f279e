"""Shared test fixtures. Tests run on the CPU; one thread keeps parallel suites from thrashing."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli(runner):
    """Invoke the real CLI in-process: cli(["compress", ...]) -> Result."""
    from prunekit.cli import app

    def invoke(args: list[str]):
        return runner.invoke(app, args, catch_exceptions=False)

    return invoke
