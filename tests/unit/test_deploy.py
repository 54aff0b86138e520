"""Deployment files, checked without a Docker engine: docker-compose.yml parses and every
service in it is complete; each image's HEALTHCHECK is a real `sundial` command; every
variable the compose file or docs/operations.md names is one the settings read, with the
default they say."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from sundial.api.settings import ApiSettings
from sundial.core.cli import build_parser
from sundial.core.settings import Settings, variables
from sundial.scheduler.settings import SchedulerSettings
from sundial.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("scheduler", "worker", "api")
INFRASTRUCTURE = ("postgres", "rabbitmq")
MODELS: tuple[type[BaseSettings], ...] = (Settings, WorkerSettings, ApiSettings, SchedulerSettings)


ALL_VARIABLES = {name for model in MODELS for name in variables(model)}


def model_of(name: str) -> type[BaseSettings]:
    """The narrowest settings class that reads this variable."""
    for model in MODELS:
        if name in variables(model):
            return model
    raise AssertionError(f"{name} is read by no settings class")


def loaded_with(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> tuple[Any, Any]:
    """(the field's value with only NAME=value in the environment, the field's default)."""
    model = model_of(name)
    field = variables(model)[name]
    with monkeypatch.context() as m:
        for other in ALL_VARIABLES:
            m.delenv(other, raising=False)
        m.setenv(name, value)
        loaded = getattr(model(), field)
    return loaded, model.model_fields[field].default


# --- docker-compose.yml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def sundial_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if n not in INFRASTRUCTURE}


def test_compose_names_infrastructure_migration_and_the_three_services(compose) -> None:
    assert set(compose["services"]) == {*INFRASTRUCTURE, "migrate", *SERVICES}
    assert set(compose["volumes"]) >= {"postgres-data", "rabbitmq-data"}
    for name in INFRASTRUCTURE:
        image = compose["services"][name]["image"]
        assert image.startswith(f"{name}:") and image.endswith("alpine"), image
        volume = compose["services"][name]["volumes"][0].split(":")[0]
        assert volume in compose["volumes"], f"{name} keeps its data in a named volume"


def test_every_service_has_an_image_a_healthcheck_and_an_environment(compose) -> None:
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        assert service.get("environment"), f"{name} has no environment"
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if check.get("disable"):
            # Only a one-shot task may go without one: its exit code is its health.
            assert service.get("restart") == "no", f"{name} runs on without a healthcheck"
        else:
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        if name != "migrate":
            assert service["restart"] == "unless-stopped", name


def test_compose_healthchecks_of_the_services_are_real_sundial_commands(compose) -> None:
    for name in SERVICES:
        test = compose["services"][name]["healthcheck"]["test"]
        assert test == ["CMD", "sundial", "healthcheck", name]
        assert_sundial_command(test[1:])


def test_services_start_after_healthy_servers_and_a_successful_migration(compose) -> None:
    for name in SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    migrate = compose["services"]["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["build"]["target"] == "migrate"


def test_two_schedulers_for_high_availability_and_a_scalable_worker(compose) -> None:
    services = compose["services"]
    assert services["scheduler"]["deploy"]["replicas"] >= 2
    for name in SERVICES:
        service = services[name]
        assert "container_name" not in service, f"{name} could not be scaled"
        assert service["build"]["target"] == name
    assert services["api"]["ports"] == ["8000:8000"]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_the_worker_gets_longer_to_stop_than_its_drain_grace(compose) -> None:
    worker = compose["services"]["worker"]
    grace = re.fullmatch(r"\$\{WORKER_SHUTDOWN_GRACE:-(\d+)\}",
                         worker["environment"]["WORKER_SHUTDOWN_GRACE"])
    assert grace
    assert seconds(worker["stop_grace_period"]) > int(grace[1])


def test_compose_variables_are_real_settings_with_their_true_defaults(compose, monkeypatch) -> None:
    for name, service in sundial_services(compose).items():
        for variable, value in service["environment"].items():
            assert variable in ALL_VARIABLES, f"{name}: {variable} is read by no Sundial setting"
            value = str(value)
            default = re.fullmatch(r"\$\{(?P<var>[A-Z0-9_]+):-(?P<default>[^}]*)\}", value)
            if default:
                assert default["var"] == variable, f"{name}: {variable} reads {default['var']}"
                loaded, expected = loaded_with(monkeypatch, variable, default["default"])
                assert loaded == expected, (
                    f"{name}: {variable} defaults to {default['default']!r} in the compose file, "
                    f"to {expected!r} in the settings")
            elif "${" not in value:
                loaded_with(monkeypatch, variable, value)  # a fixed value must be valid


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its (INSTRUCTION, arguments) lines, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", args.strip(), re.IGNORECASE)
            assert match, f"every stage is named: FROM {args}"
            current = [("FROM", match[1])]
            stages[match[2]] = current
        else:
            current.append((instruction, args.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def assert_sundial_command(argv: list[str]) -> None:
    assert argv[0] == "sundial", argv
    try:
        build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{argv} is not a sundial command")


def test_each_service_image_checks_its_own_health_with_a_real_sundial_command() -> None:
    stages = dockerfile_stages()
    for service in SERVICES:
        checks = instructions(stages[service], "HEALTHCHECK")
        assert len(checks) == 1, service
        exec_form = re.search(r"\bCMD\s+(\[.*\])\s*$", checks[0])
        assert exec_form, f"{service}: HEALTHCHECK in exec form (no shell at run time)"
        argv = json.loads(exec_form[1])
        assert argv == ["sundial", "healthcheck", service]
        assert_sundial_command(argv)
        assert json.loads(instructions(stages[service], "CMD")[0]) == [service]


def test_images_are_alpine_multi_stage_non_root_and_stop_on_sigterm() -> None:
    stages = dockerfile_stages()
    for name, stage in stages.items():
        assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-alpine|runtime", stage[0][1]), name
    runtime = stages["runtime"]
    assert runtime[0][1].endswith("-alpine"), "the runtime starts from a clean Alpine image"
    assert not any("apk add" in args for args in instructions(runtime, "RUN")), (
        "build tools stay in the builder stage")
    assert "from=builder" in " ".join(instructions(runtime, "RUN"))
    assert instructions(runtime, "USER") == ["1000:1000"]
    assert instructions(runtime, "STOPSIGNAL") == ["SIGTERM"]
    assert json.loads(instructions(runtime, "ENTRYPOINT")[0]) == ["sundial"]
    for service in (*SERVICES, "migrate"):
        assert stages[service][0][1] == "runtime", service


def test_the_image_installs_the_wheel_that_carries_the_sql_and_copies_nothing_else() -> None:
    stages = dockerfile_stages()
    builder, runtime = stages["builder"], stages["runtime"]
    assert "sql ./sql" in instructions(builder, "COPY"), "the wheel is built with sql/ in it"
    assert any(re.search(r"pip wheel .* \.$", args) for args in instructions(builder, "RUN"))
    assert instructions(runtime, "COPY") == [], "the runtime takes everything from the wheel"
    assert "SUNDIAL_SQL_DIR" not in " ".join(instructions(runtime, "ENV"))
    assert "--no-index --find-links=/wheels sundial" in " ".join(instructions(runtime, "RUN"))
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!sql/" in ignored and "!services/" in ignored and "!README.md" in ignored


# --- docs/operations.md --------------------------------------------------------------------


def documented_variables() -> dict[str, str]:
    """Variable -> default cell, from the tables of the configuration reference."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|([^|]*)\|", section, re.MULTILINE)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a variable is documented twice"
    return {name: default.strip() for name, default in rows}


def test_operations_guide_documents_every_setting_and_nothing_else() -> None:
    documented = set(documented_variables())
    assert documented - ALL_VARIABLES == set(), "documented but read by no setting"
    assert ALL_VARIABLES - documented == set(), "read by a setting but not documented"


def test_operations_guide_states_the_true_defaults(monkeypatch) -> None:
    for name, cell in documented_variables().items():
        plain = re.fullmatch(r"`([^`]*)`", cell)
        if plain:
            loaded, expected = loaded_with(monkeypatch, name, plain[1])
            assert loaded == expected, f"{name}: documented default {cell}, real {expected!r}"
        else:
            assert cell == "—", f"{name}: a default is `value` or — (none), not {cell!r}"
            field = variables(model_of(name))[name]
            assert not model_of(name).model_fields[field].default, f"{name} has a default"
