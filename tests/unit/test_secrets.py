"""Where a credential written for one URL may go (sundial.core.secrets.same_origin)."""

from __future__ import annotations

import pytest

from sundial.core.secrets import same_origin


@pytest.mark.parametrize("a, b, same", [
    ("http://h.example/x", "http://h.example:80/y", True),    # the default port, written or not
    ("https://h.example/", "https://h.example:443/", True),
    ("http://H.example/", "http://h.example/", True),
    ("http://u:pw@h.example/", "http://h.example/", True),    # user info is not the origin
    ("http://h.example/", "https://h.example/", False),
    ("https://h.example/", "https://h.example:80/", False),
    ("http://h.example/", "http://h.example:8080/", False),
    ("http://h.example/", "http://g.example/", False),
    ("http://h.example:bad/", "http://h.example/", False),    # no port to compare: not alike
])
def test_same_origin(a: str, b: str, same: bool) -> None:
    assert same_origin(a, b) is same
    assert same_origin(b, a) is same
