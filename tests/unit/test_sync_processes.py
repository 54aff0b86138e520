"""The settings of sync Python jobs' processes: how many, what a child is given of the
worker's settings (never a secret), and how a dead child's exit reads."""

from __future__ import annotations

import pickle
import signal

import pytest
from cryptography.fernet import Fernet

from sundial.core.errors import ConfigError
from sundial.core.settings import load_settings
from sundial.worker.processes import exit_description, without_secrets
from sundial.worker.settings import WorkerSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORKER_SYNC_PROCESSES", "WORKER_CONCURRENCY", "DATABASE_URL", "RABBITMQ_URL",
                 "ENCRYPTION_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def test_sync_processes_default_to_the_concurrency(monkeypatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "7")
    assert load_settings(WorkerSettings).sync_processes == 7
    monkeypatch.setenv("WORKER_SYNC_PROCESSES", "2")
    assert load_settings(WorkerSettings).sync_processes == 2
    monkeypatch.setenv("WORKER_SYNC_PROCESSES", "0")
    assert load_settings(WorkerSettings).sync_processes == 0


@pytest.mark.parametrize("value", ["-1", "many", "10001"])
def test_a_bad_sync_processes_value_says_what_is_expected(monkeypatch, value) -> None:
    monkeypatch.setenv("WORKER_SYNC_PROCESSES", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(WorkerSettings)
    message = str(caught.value)
    assert f"WORKER_SYNC_PROCESSES={value!r}" in message
    assert "0-10000" in message and "0 runs them in threads" in message


def test_a_child_gets_the_settings_without_secrets(monkeypatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:db-secret@db:5432/app")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://app:mq-secret@mq:5672/,amqp://app:mq-secret@mq2/")
    monkeypatch.setenv("ENCRYPTION_KEY", key)
    monkeypatch.setenv("WORKER_SYNC_PROCESSES", "3")
    settings = load_settings(WorkerSettings)
    assert settings.database_url.endswith("db-secret@db:5432/app")  # cached, as a worker has it
    sent = pickle.dumps(without_secrets(settings))
    for secret in ("db-secret", "mq-secret", key):
        assert secret.encode() not in sent
    child = pickle.loads(sent)
    assert child.database_url == "postgresql://app:***@db:5432/app"
    assert child.rabbitmq_url == "amqp://app:***@mq:5672/,amqp://app:***@mq2/"
    assert child.encryption_key is None
    assert (child.sync_processes, child.worker_queues) == (3, settings.worker_queues)


@pytest.mark.parametrize(("returncode", "text"), [
    (1, "exited with code 1"),
    (0, "exited with code 0"),
    (-signal.SIGKILL, "exited with signal 9 (SIGKILL: killed, e.g. by the out-of-memory killer)"),
    (-signal.SIGSEGV, "exited with signal 11 (SIGSEGV)"),
    (-200, "exited with signal 200"),
])
def test_a_dead_childs_exit_reads_plainly(returncode, text) -> None:
    assert exit_description(returncode) == text
