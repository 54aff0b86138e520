"""The sign-in page's two guards, run in Node (the browser test in tests/e2e needs Chromium):
after signing in it goes back only to a path on this site, and `reason=` shows only one of
the page's own sentences, never text from the link."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

DASHBOARD_JS = Path(__file__).resolve().parents[2] / "services" / "api" / "static" / "dashboard.js"
NODE = shutil.which("node")
ORIGIN = "http://127.0.0.1:8000"

pytestmark = pytest.mark.skipif(NODE is None, reason="needs node (apt-get install -y nodejs)")

# Where sign-in may go next: a path on this site, never another origin however spelled
# (tests/e2e/test_dashboard.py asks Chromium the same). Node's URL parser is the WHATWG
# one browsers use: "/\\host" is "//host" there too.
NEXT = [
    ("/runs?status=failed#top", "/runs?status=failed#top"),
    ("/jobs/7", "/jobs/7"),
    ("/\\evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\t/evil.example/", "/"),
    ("/\\/evil.example/", "/"),
    ("https://evil.example/", "/"),
    (f"{ORIGIN}/jobs", "/"),
    ("javascript:alert(1)", "/"),
    ("evil.example", "/"),
    ("", "/"),
    (None, "/"),
]
REASONS = [("revoked", "This API key was revoked. Paste another one."),
           ("Your session ended. Call +1 555 0100 to restore it", None),
           ("constructor", None), ("__proto__", None), ("toString", None), ("<b>hi</b>", None),
           (None, None)]


def run_dashboard(expression: str) -> object:
    """The JSON value of `expression`, evaluated where dashboard.js defined `Sundial`."""
    script = f"""
        const vm = require("vm");
        const context = {{location: {{origin: {json.dumps(ORIGIN)}}}, URL, URLSearchParams}};
        vm.createContext(context);
        vm.runInContext(require("fs").readFileSync({json.dumps(str(DASHBOARD_JS))}, "utf8")
                        + "\\n;globalThis.Sundial = Sundial;", context);
        process.stdout.write(JSON.stringify(vm.runInContext({json.dumps(expression)}, context)));
    """
    done = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=60,
                          check=True)
    return json.loads(done.stdout)


def test_sign_in_returns_only_to_a_path_on_this_site() -> None:
    cases = json.dumps([n for n, _ in NEXT])
    assert run_dashboard(f"{cases}.map((n) => Sundial.safeNext(n))") == [p for _, p in NEXT]


def test_a_reason_is_only_one_of_the_pages_own_sentences() -> None:
    cases = json.dumps([r for r, _ in REASONS])
    assert run_dashboard(f"{cases}.map((r) => Sundial.signInReason(r))") == [s for _, s in REASONS]
