"""Fixtures shared by the integration tests of the admin CLI (test_cli*.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, service_env


@pytest.fixture
def sundial(db_url: str, amqp_url: str):
    """run(*args): `python -m sundial *args` against this test's database, as a user runs it."""
    env = service_env(db_url, amqp_url)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sundial", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    return run
