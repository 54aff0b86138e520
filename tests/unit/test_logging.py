"""Log lines: each event once, on one stream, libraries' records rendered alike."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging, sys
from sundial.core.logging import configure_logging, get_logger
configure_logging("INFO", "json", service="worker", stream={stream})
get_logger("t").error("run.failed", run_id=7, database_url="postgresql://u:pw@db/x")
get_logger("t").info("run.ok", run_id=8)
logging.getLogger("aio_pika.robust_connection").warning("connection lost: %s", "reset")
logging.getLogger("asyncpg").info("not shown: below WARNING")
"""


def _run(stream: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(stream=stream)],
                          capture_output=True, text=True, timeout=60, check=True)


def test_each_event_is_one_json_line_on_stdout() -> None:
    done = _run("None")
    assert done.stderr == ""
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == ["run.failed", "run.ok", "connection lost: reset"]
    failed, _, library = events
    assert failed["level"] == "error" and failed["service"] == "worker"
    assert failed["database_url"] == "postgresql://u:***@db/x"
    assert library["level"] == "warning" and library["logger"] == "aio_pika.robust_connection"
    assert library["service"] == "worker" and "timestamp" in library


def test_admin_commands_can_log_to_stderr() -> None:
    done = _run("sys.stderr")
    assert done.stdout == ""
    assert [json.loads(line)["event"] for line in done.stderr.splitlines()] == [
        "run.failed", "run.ok", "connection lost: reset"]
