"""The fault-injection switch: parsed strictly, so a typo cannot silently disable a
fault scenario."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sundial.core import faults


def test_points_and_probabilities_are_parsed():
    assert faults.parse("") == {}
    assert faults.parse("after_commit, before_mark_published:0.25") == {
        "after_commit": 1.0, "before_mark_published": 0.25}


@pytest.mark.parametrize("value, message", [
    ("after_comit", "'after_comit' is not a fault point; use one of after_claim"),
    ("after_claim:2", "probability '2' of after_claim must be a number from 0 to 1"),
    ("after_claim:often", "probability 'often' of after_claim must be a number from 0 to 1"),
])
def test_a_bad_entry_is_refused_naming_it(value, message):
    with pytest.raises(ValueError, match=message):
        faults.parse(value)


def test_a_process_reaching_a_point_dies_as_if_sigkilled():
    code = "from sundial.core import faults; faults.reached('after_commit'); print('survived')"
    env = {faults.ENV: "after_commit"}
    done = subprocess.run([sys.executable, "-c", code], env={**_base_env(), **env},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == -9 and "survived" not in done.stdout
    done = subprocess.run([sys.executable, "-c", code], env=_base_env(), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and "survived" in done.stdout


def test_a_raise_point_raises_and_loop_points_are_for_raising_only():
    code = ("from sundial.core import faults\n"
            "try:\n    faults.reached('reap')\n"
            "except faults.InjectedFault as exc:\n    print('raised', exc)")
    done = subprocess.run([sys.executable, "-c", code],
                          env={**_base_env(), faults.RAISE_ENV: "reap"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "raised SUNDIAL_FAULT_RAISE_AT: injected at reap" in done.stdout
    assert faults.parse("reap,after_commit:0.5", faults.RAISE_ENV,
                        faults.POINTS | faults.LOOP_POINTS) == {"reap": 1.0, "after_commit": 0.5}
    with pytest.raises(ValueError, match="SUNDIAL_FAULT_KILL_AT: 'reap' is not a fault point"):
        faults.parse("reap")


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (faults.ENV, faults.RAISE_ENV)}
