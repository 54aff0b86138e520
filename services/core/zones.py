"""Time-zone rules from the `tzdata` package Sundial pins, never from the host.

Python's zoneinfo looks in the host's zone files (TZPATH: /usr/share/zoneinfo and the
like, or PYTHONTZPATH) before the tzdata package. Hosts and images carry different,
often older, rules, so the same cron in America/Havana would fire an hour apart on two
machines. Importing `sundial.core` calls `use_packaged_rules()`: TZPATH is emptied for
the whole process, so every ZoneInfo (Sundial's and, in a worker, the handlers') reads
the tzdata package, and zones already cached from the host's files are dropped.
"""

from __future__ import annotations

import zoneinfo
from functools import cache

import tzdata

# The IANA release of the rules in use, e.g. "2026a": logged at start, shown in the API.
TZDATA_VERSION: str = tzdata.IANA_VERSION


def use_packaged_rules() -> None:
    zoneinfo.reset_tzpath(to=())
    zoneinfo.ZoneInfo.clear_cache()


@cache
def names() -> frozenset[str]:
    """Every zone name the tzdata package knows (`Europe/Paris`, `UTC`; not `Europe`)."""
    return frozenset(zoneinfo.available_timezones())
