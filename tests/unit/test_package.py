"""The `sundial` package's face: what a handler author imports from the top, and a CLI
that says so when part of the installation is broken."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import sundial
from sundial.core import cli
from sundial.worker import handlers, registry


def test_a_handler_author_imports_everything_from_the_top() -> None:
    from sundial import JobError, PayloadError, RunContext, current_run, job

    assert job is registry.job
    assert current_run is handlers.current_run
    assert RunContext is handlers.RunContext
    assert issubclass(PayloadError, JobError) and not PayloadError.retryable
    assert set(sundial.__all__) <= set(dir(sundial))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = sundial.nothing_here


def test_importing_a_service_does_not_load_the_worker() -> None:
    code = "import sys, sundial.core.settings; print('sundial.worker' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False", done.stderr


def test_current_run_outside_a_run_says_so() -> None:
    with pytest.raises(RuntimeError, match="outside a run"):
        sundial.current_run()


def test_current_run_inside_a_run_is_that_run() -> None:
    ctx = handlers.RunContext(settings=None, run_id=7, job_id=3, job="j", attempt=2,  # type: ignore[arg-type]
                              max_attempts=5)
    token = handlers.current.set(ctx)
    try:
        assert sundial.current_run() is ctx
    finally:
        handlers.current.reset(token)


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    signal.signal(signal.SIGTERM, before)
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"sundial {version('sundial')}"


def test_a_command_module_that_does_not_import_is_an_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken_commands.py").write_text("import a_dependency_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "broken_commands"))
    assert cli.main(["worker", "--help"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the commands of broken_commands" in err
    assert "No module named 'a_dependency_that_is_missing'" in err
