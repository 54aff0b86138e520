"""`sundial notify channels|rules|history` as a user runs it, against a real database."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from tests.conftest import ROOT, service_env


@pytest.fixture
def sundial(db_url: str, amqp_url: str):
    env = service_env(db_url, amqp_url, ENCRYPTION_KEY=Fernet.generate_key().decode(),
                      WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sundial", "notify", *args], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    return run


@pytest.mark.timeout(300)   # a dozen processes, each importing Sundial
def test_channels_rules_test_and_history(sundial, pool) -> None:
    added = sundial("channels", "add", "hooks", "--kind", "webhook", "--url",
                    "http://127.0.0.1:9/hook")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip().splitlines()[-1]
    assert "shown only once" in added.stdout and len(secret) >= 32
    assert sundial("channels", "add", "mail", "--kind", "email", "--to", "a@example.com",
                   "--to", "b@example.com").returncode == 0
    listed = json.loads(sundial("channels", "list", "--json").stdout)
    assert [(c["name"], c["config"]) for c in listed] == [
        ("hooks", {"url": "http://127.0.0.1:9/hook"}),
        ("mail", {"to": ["a@example.com", "b@example.com"]})]

    rule = sundial("rules", "add", "silent", "--kind", "schedule_silent", "--channel", "mail",
                   "--within", "3600", "--json")
    assert rule.returncode == 0, rule.stderr
    assert json.loads(rule.stdout)["channel"] == "mail"
    assert sundial("rules", "edit", "silent", "--disable").returncode == 0
    [row] = json.loads(sundial("rules", "list", "--json").stdout)
    assert row["enabled"] is False and row["within_seconds"] == 3600

    bad = sundial("rules", "add", "x", "--kind", "missed_slot", "--channel", "mail")
    assert bad.returncode == 2 and "within_seconds" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = sundial("rules", "add", "x", "--kind", "run_failed", "--channel", "nope")
    assert missing.returncode == 3 and "nope" in missing.stderr

    tested = sundial("channels", "test", "mail")
    assert tested.returncode == 0 and "queued test notification" in tested.stdout
    [entry] = json.loads(sundial("history", "--json").stdout)
    assert (entry["channel"], entry["status"], entry["state"]) == ("mail", "pending", "test")
    assert sundial("channels", "delete", "mail").returncode == 0
    assert json.loads(sundial("rules", "list", "--json").stdout) == []
