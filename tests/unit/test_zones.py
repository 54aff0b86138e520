"""Zone rules come from the pinned tzdata package, never from the host's zone files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zoneinfo
from importlib.resources import files
from pathlib import Path

import tzdata

from sundial.core import zones

# Run in a fresh interpreter whose host zone files (PYTHONTZPATH) hold a wrong America/Havana
# (UTC's rules), loaded once before Sundial is imported, as a user's module might.
HOST_RULES_IGNORED = """
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

early = ZoneInfo("America/Havana")
july = datetime(2026, 7, 1, 12, tzinfo=timezone.utc)
print("before", early.utcoffset(july).total_seconds() / 3600)

from sundial.core.schedule import Spec, next_fire, zone

print("zone", zone("America/Havana").utcoffset(july).total_seconds() / 3600)
print("zoneinfo", ZoneInfo("America/Havana").utcoffset(july).total_seconds() / 3600)
spec = Spec("cron", cron="0 9 * * *", timezone="America/Havana")
print("cron", next_fire(spec, july).isoformat())
"""


def test_tzpath_is_empty_once_sundial_core_is_imported() -> None:
    assert zoneinfo.TZPATH == ()


def test_host_zone_files_are_ignored_even_if_read_before_sundial(tmp_path: Path) -> None:
    fake = tmp_path / "America" / "Havana"
    fake.parent.mkdir()
    fake.write_bytes(files("tzdata.zoneinfo").joinpath("UTC").read_bytes())
    env = {**os.environ, "PYTHONTZPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", HOST_RULES_IGNORED], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["before"] == "0.0", "the fake host file is what plain zoneinfo reads"
    # Havana keeps summer time (UTC-4) in July: the tzdata package's rules.
    assert lines["zone"] == "-4.0"
    assert lines["zoneinfo"] == "-4.0", "no zone cached from the host's files is reused"
    assert lines["cron"] == "2026-07-01T13:00:00+00:00"


def test_the_version_in_use_is_the_packages() -> None:
    assert zones.TZDATA_VERSION == tzdata.IANA_VERSION
    assert re.fullmatch(r"\d{4}[a-z]", zones.TZDATA_VERSION)


def test_zone_names_are_the_packages_not_its_folders() -> None:
    assert {"UTC", "Europe/Paris", "America/Havana"} <= zones.names()
    assert "Europe" not in zones.names() and "localtime" not in zones.names()
