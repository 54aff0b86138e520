"""Configuration from the environment: every documented variable loads, both URL and
split forms work, and a bad value stops start-up with one clear line that names the
variable, shows its value (masked for secrets) and says what is expected."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from pydantic import AliasChoices, Field

from sundial.core.errors import ConfigError
from sundial.core.settings import Settings, load_settings, redact_url

ENV_NAMES = sorted({str(name) for info in Settings.model_fields.values()
                    if isinstance(info.validation_alias, AliasChoices)
                    for name in info.validation_alias.choices})


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Only what a test sets: the developer's or CI's own variables must not leak in."""
    for name in [*ENV_NAMES, "PGTARGETSESSIONATTRS"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(monkeypatch, **env)
    message = str(caught.value)
    assert "\n" not in message, "one line"
    assert message.startswith("configuration error: "), message
    return message


def test_documented_variables_are_all_read() -> None:
    documented = {
        "DATABASE_URL", "RABBITMQ_URL", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB",
        "POSTGRES_USER", "POSTGRES_PASSWORD", "RABBITMQ_HOST", "RABBITMQ_PORT", "RABBITMQ_USER",
        "RABBITMQ_PASSWORD", "SCHEDULER_POLL_INTERVAL", "SCHEDULER_BATCH_SIZE",
        "SCHEDULER_LOOK_AHEAD", "WORKER_QUEUES", "WORKER_CONCURRENCY", "WORKER_HEARTBEAT_INTERVAL",
        "RUN_LEASE_SECONDS", "MAX_RETRY_ATTEMPTS", "CLEANUP_RETENTION_DAYS",
        "WORKER_OFFLINE_THRESHOLD", "HEALTHCHECK_INTERVAL", "LOG_LEVEL", "LOG_FORMAT",
        "ENCRYPTION_KEY",
    }
    assert documented <= set(ENV_NAMES)


def test_defaults_need_no_environment(clean_env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.database_url == "postgresql://postgres@localhost:5432/sundial"
    assert s.rabbitmq_url == "amqp://guest:guest@localhost:5672/%2F"
    assert (s.poll_interval_s, s.batch_size, s.look_ahead_s) == (5.0, 500, 0.0)
    assert (s.worker_queues, s.worker_concurrency) == (("default",), 10)
    assert (s.log_level, s.log_format, s.encryption_key) == ("INFO", "json", None)


KEY = "A" * 43 + "="  # a valid Fernet key, fixed so the test ids are the same in every process


@pytest.mark.parametrize(("name", "value", "field", "expected"), [
    ("SCHEDULER_POLL_INTERVAL", "0.5", "poll_interval_s", 0.5),
    ("SCHEDULER_BATCH_SIZE", "250", "batch_size", 250),
    ("SCHEDULER_LOOK_AHEAD", "2.5", "look_ahead_s", 2.5),
    ("SCHEDULER_PUBLISH_LEASE", "45", "publish_lease_s", 45.0),
    ("SCHEDULER_STALE_AFTER", "90", "scheduler_stale_after_s", 90.0),
    ("WORKER_QUEUES", " default , reports,emails.v2 ", "worker_queues",
     ("default", "reports", "emails.v2")),
    ("WORKER_CONCURRENCY", "32", "worker_concurrency", 32),
    ("WORKER_HEARTBEAT_INTERVAL", "2", "worker_heartbeat_interval_s", 2.0),
    ("RUN_LEASE_SECONDS", "120", "run_lease_s", 120.0),
    ("MAX_RETRY_ATTEMPTS", "7", "max_retry_attempts", 7),
    ("CLEANUP_RETENTION_DAYS", "0.5", "cleanup_retention_days", 0.5),
    ("WORKER_OFFLINE_THRESHOLD", "15", "worker_offline_threshold_s", 15.0),
    ("HEALTHCHECK_INTERVAL", "10", "healthcheck_interval_s", 10.0),
    ("HEALTH_DIR", "/var/run/sundial", "health_dir", "/var/run/sundial"),
    ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("LOG_FORMAT", "CONSOLE", "log_format", "console"),
    ("METRICS_PORT", "9100", "metrics_port", 9100),
    ("ENCRYPTION_KEY", KEY, "encryption_key", KEY),
    ("ENCRYPTION_KEY", "", "encryption_key", None),
    ("RABBITMQ_DELIVERY_LIMIT", "3", "delivery_limit", 3),
    ("DATABASE_POOL_MAX", "4", "db_pool_max", 4),
])
def test_variable_loads(clean_env: pytest.MonkeyPatch, name: str, value: str, field: str,
                        expected: object) -> None:
    assert getattr(load(clean_env, **{name: value}), field) == expected


def test_urls_are_used_as_given(clean_env: pytest.MonkeyPatch) -> None:
    s = load(clean_env, DATABASE_URL="postgresql://app:s3cret@db.internal:6432/jobs",
             RABBITMQ_URL="amqps://app:s3cret@mq.internal:5671/prod",
             POSTGRES_HOST="ignored", RABBITMQ_HOST="ignored")
    assert s.database_url == "postgresql://app:s3cret@db.internal:6432/jobs"
    assert s.rabbitmq_url == "amqps://app:s3cret@mq.internal:5671/prod"


def test_rabbitmq_url_may_list_several_nodes(clean_env: pytest.MonkeyPatch) -> None:
    s = load(clean_env, RABBITMQ_URL=" amqp://app:p%2Cw@mq1:5672/prod, amqps://app:p%2Cw@mq2/prod")
    assert s.rabbitmq_nodes == ("amqp://app:p%2Cw@mq1:5672/prod", "amqps://app:p%2Cw@mq2/prod")


def test_one_node_is_a_list_of_one(clean_env: pytest.MonkeyPatch) -> None:
    assert load(clean_env, RABBITMQ_PORT="5673").rabbitmq_nodes == (
        "amqp://guest:guest@localhost:5673/%2F",)


@pytest.mark.parametrize(("value", "expected"), [
    ("amqp://app:hunter2@mq1/,http://app:hunter2@mq2/",
     "node 2 of 2 ('http://app:***@mq2/') must start with amqp:// or amqps://"),
    ("amqp://app:hunter2@mq1/,,amqp://app:hunter2@mq2/",
     "node 2 of 3 is empty: separate the node URLs with single commas, and write a comma "
     "inside a password as %2C"),
    ("amqp://app:hunter2@mq1/,amqp://app:hunter2@mq1/",
     "names node 'amqp://app:***@mq1/' twice: list each node once"),
    ("amqp://app:hunter2@mq1/a,amqp://app:hunter2@mq2/b",
     "names several vhosts (a, b): every node of the cluster must name the same vhost"),
    ("amqp://app:hunter2@mq1:5672/,amqp://app:hunter2@mq2:99999/",
     "node 2 of 2 ('amqp://app:***@mq2:99999/') has a bad port"),
    ("amqp:///", "names no host, e.g. amqp://guest:guest@mq1:5672/"),
])
def test_a_bad_node_list_names_the_node_and_the_fix(clean_env: pytest.MonkeyPatch, value: str,
                                                    expected: str) -> None:
    message = config_error(clean_env, RABBITMQ_URL=value)
    assert f"RABBITMQ_URL=***: {expected}" in message, message
    assert "hunter2" not in message


def test_split_forms_build_the_urls(clean_env: pytest.MonkeyPatch) -> None:
    s = load(clean_env, POSTGRES_HOST="db", POSTGRES_PORT="6543", POSTGRES_DB="jobs",
             POSTGRES_USER="app", POSTGRES_PASSWORD="pw", RABBITMQ_HOST="mq",
             RABBITMQ_PORT="5673", RABBITMQ_USER="svc", RABBITMQ_PASSWORD="pw2",
             RABBITMQ_VHOST="sundial")
    assert s.database_url == "postgresql://app:pw@db:6543/jobs"
    assert s.rabbitmq_url == "amqp://svc:pw2@mq:5673/sundial"


@pytest.mark.parametrize("password", ["p@ss:w/rd", "100%#?&= space", "naïve€"])
def test_split_form_passwords_are_quoted(clean_env: pytest.MonkeyPatch, password: str) -> None:
    s = load(clean_env, POSTGRES_USER="a@b", POSTGRES_PASSWORD=password, RABBITMQ_PASSWORD=password)
    for url in (s.database_url, s.rabbitmq_url):
        parts = urlsplit(url)
        assert unquote(parts.password or "") == password
        assert parts.hostname == "localhost"
    assert unquote(urlsplit(s.database_url).username or "") == "a@b"


def test_empty_postgres_password_means_none_in_the_url(clean_env: pytest.MonkeyPatch) -> None:
    assert load(clean_env, POSTGRES_USER="app").database_url == "postgresql://app@localhost:5432/sundial"


# (variable, bad value, what the message must say is expected)
BAD_VALUES = [
    ("SCHEDULER_POLL_INTERVAL", "abc", "> 0 and <= 3600"),
    ("SCHEDULER_POLL_INTERVAL", "0", "> 0 and <= 3600"),
    ("SCHEDULER_BATCH_SIZE", "0", "1-10000"),
    ("SCHEDULER_BATCH_SIZE", "1.5", "1-10000"),
    ("SCHEDULER_LOOK_AHEAD", "301", "0-300"),
    ("SCHEDULER_LOOK_AHEAD", "-1", "0-300"),
    ("WORKER_QUEUES", " , ", "at least one queue"),
    ("WORKER_QUEUES", "a b", "must be letters, digits"),
    ("WORKER_CONCURRENCY", "-1", "1-10000"),
    ("WORKER_HEARTBEAT_INTERVAL", "0", "> 0"),
    ("RUN_LEASE_SECONDS", "soon", "> 0"),
    ("MAX_RETRY_ATTEMPTS", "0", ">= 1"),
    ("CLEANUP_RETENTION_DAYS", "-3", "> 0"),
    ("WORKER_OFFLINE_THRESHOLD", "", "> 0"),
    ("HEALTHCHECK_INTERVAL", "-5", "> 0"),
    ("LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("LOG_FORMAT", "xml", "json or console"),
    ("POSTGRES_PORT", "70000", "a TCP port, 1-65535"),
    ("RABBITMQ_PORT", "amqp", "a TCP port, 1-65535"),
    ("METRICS_PORT", "-1", "0 to turn it off"),
    ("RABBITMQ_DELIVERY_LIMIT", "0", ">= 1"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD_VALUES)
def test_bad_value_is_one_clear_line(clean_env: pytest.MonkeyPatch, name: str, value: str,
                                     expected: str) -> None:
    message = config_error(clean_env, **{name: value})
    assert f"{name}={value!r}: " in message, message
    assert "(expected " in message and expected in message, message


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("DATABASE_URL", "mysql://app:hunter2@db/jobs", "must start with postgresql://"),
    ("RABBITMQ_URL", "http://app:hunter2@mq/", "must start with amqp:// or amqps://"),
    ("ENCRYPTION_KEY", "hunter2-not-a-fernet-key", "is not a Fernet key"),
])
def test_bad_secret_is_named_but_masked(clean_env: pytest.MonkeyPatch, name: str, value: str,
                                        expected: str) -> None:
    message = config_error(clean_env, **{name: value})
    assert f"{name}=***: {expected}" in message, message
    assert "hunter2" not in message


def test_several_bad_values_in_one_line(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, SCHEDULER_BATCH_SIZE="0", LOG_FORMAT="xml")
    assert "SCHEDULER_BATCH_SIZE='0'" in message and "LOG_FORMAT='xml'" in message
    assert "; " in message


def test_pool_bounds_are_checked_together(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, DATABASE_POOL_MIN="20", DATABASE_POOL_MAX="5")
    assert "DATABASE_POOL_MIN=20 must not exceed DATABASE_POOL_MAX=5" in message


def test_infinite_and_nan_numbers_are_refused(clean_env: pytest.MonkeyPatch) -> None:
    for value in ("1e999", "nan", "inf"):
        message = config_error(clean_env, HEALTHCHECK_INTERVAL=value)
        assert message.startswith(f"configuration error: HEALTHCHECK_INTERVAL='{value}'")
        assert "finite" in message


class ServiceSettings(Settings):
    """A service's own settings reuse the same loader and error line."""

    drain_grace_s: float = Field(30.0, gt=0, validation_alias=AliasChoices("WORKER_DRAIN_GRACE"),
                                 description="seconds to finish in-flight runs on SIGTERM, > 0")


def test_service_subclass_gets_the_same_clear_line(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WORKER_DRAIN_GRACE", "-1")
    with pytest.raises(ConfigError) as caught:
        load_settings(ServiceSettings)
    assert str(caught.value) == ("configuration error: WORKER_DRAIN_GRACE='-1': Input should be "
                                 "greater than 0 (expected seconds to finish in-flight runs on "
                                 "SIGTERM, > 0)")
    clean_env.setenv("WORKER_DRAIN_GRACE", "5")
    assert load_settings(ServiceSettings).drain_grace_s == 5.0


def test_settings_are_frozen(clean_env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.batch_size = 1  # type: ignore[misc]


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://app:s3cret@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
    ("amqp://guest:p%40ss@mq:5672/%2F", "amqp://guest:***@mq:5672/%2F"),
    ("postgresql://app@db/jobs", "postgresql://app@db/jobs"),
])
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# (DATABASE_URL, what the message must say: the part that is wrong and the fix)
BAD_DATABASE_URLS = [
    ("postgresql://app:hunter2@db1:5432,db2:99999/jobs?target_session_attrs=read-write",
     "host 'db2' port '99999' must be a number 1-65535"),
    ("postgresql://app:hunter2@db1:54x2/jobs", "host 'db1' port '54x2' must be a number 1-65535"),
    ("postgresql://app:hunter2@db1:5432,,db2/jobs?target_session_attrs=read-write",
     "host 2 of 'db1:5432,,db2' is empty or malformed: write host[:port]"),
    ("postgresql://app:hunter2@db1:5432,db2:5432/jobs?target_session_attrs=master",
     "target_session_attrs 'master' must be one of any, primary, standby, prefer-standby, "
     "read-write, read-only"),
    ("postgresql://app:hunter2@db1/jobs?sslmode=on",
     "sslmode 'on' must be one of disable, allow, prefer, require, verify-ca, verify-full"),
    ("postgresql://app:hunter2@db1,db2/jobs",
     "2 hosts with target_session_attrs 'any': add ?target_session_attrs=read-write"),
    ("postgresql://app:hunter2@db1,db2/jobs?target_session_attrs=standby",
     "2 hosts with target_session_attrs 'standby': add ?target_session_attrs=read-write"),
    ("postgresql://app:hunter2@db1/jobs?host=db2&port=0",
     "the port parameter's port '0' must be a number 1-65535"),
    ("postgresql://app:hunter2@db1/jobs?target_session_attrs",
     "the query must be name=value pairs joined by &"),
    # A password in the query is not shown, nor the part of it after an unescaped &.
    ("postgresql://app@db1/jobs?password=hunter2&x&sslmode=require",
     "the query must be name=value pairs joined by & (write a & or = inside a value as "
     "%26 or %3D)"),
]


@pytest.mark.parametrize(("url", "expected"), BAD_DATABASE_URLS)
def test_bad_database_url_names_the_part_and_the_fix(clean_env: pytest.MonkeyPatch, url: str,
                                                     expected: str) -> None:
    message = config_error(clean_env, DATABASE_URL=url)
    assert f"DATABASE_URL=***: {expected}" in message, message
    assert "(expected a postgresql:// URL, e.g. " in message and "read-write)" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", [
    "postgresql://app:pw@db1:5432,db2:5433/jobs?target_session_attrs=read-write",
    "postgresql://app@db1,db2/jobs?target_session_attrs=primary&sslmode=require",
    "postgresql://app@[::1]:5432,[fd00::2]/jobs?target_session_attrs=read-write",
    "postgres://app@/jobs?host=/var/run/postgresql",
    "postgresql://app@db1/jobs?application_name=sundial",
])
def test_good_database_urls_load_as_given(clean_env: pytest.MonkeyPatch, url: str) -> None:
    assert load(clean_env, DATABASE_URL=url).database_url == url


def test_several_hosts_may_take_the_session_attribute_from_libpq_variable(
        clean_env: pytest.MonkeyPatch) -> None:
    url = "postgresql://app@db1,db2/jobs"
    assert load(clean_env, DATABASE_URL=url, PGTARGETSESSIONATTRS="read-write").database_url == url


def test_redact_url_hides_the_password_of_several_hosts() -> None:
    assert redact_url("postgresql://app:s3cret@db1:5432,db2:5433/jobs?target_session_attrs="
                      "read-write") == ("postgresql://app:***@db1:5432,db2:5433/jobs?"
                                        "target_session_attrs=read-write")
