"""sundial.core.jsonb: JSON read, written and shown at any depth."""

from __future__ import annotations

import json

import pytest

from sundial.core import jsonb

SAMPLES = ['{}', '[]', '0', '-1.5e3', '12345678901234567890', '"a\\u00e9\\"\\n"', 'null', 'true',
           '{"a": [1, {"b": null, "c": false}], "d": "x"}', '[[], {}, [[1]], {"k": {}}]',
           ' { "a" : [ 1 , 2 ] } ']


@pytest.mark.parametrize("text", SAMPLES)
def test_the_flat_parser_reads_what_json_reads(text: str) -> None:
    assert jsonb._loads_flat(text) == json.loads(text)
    value = json.loads(text)
    assert "".join(jsonb._dumps_flat(value, ", ", ": ")) == json.dumps(value)


@pytest.mark.parametrize("text", ['[1,]', '{"a"}', '[1 2]', 'tru', '[1] x', '{"a": 1,}', '{1: 2}'])
def test_the_flat_parser_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonb._loads_flat(text)


def test_any_depth_is_read_written_and_shown() -> None:
    text = '{"a": ' * 20000 + '[1, "x"]' + "}" * 20000
    with pytest.raises(RecursionError):
        json.loads(text)
    value = jsonb.loads(text)
    assert jsonb.dumps(value) == text
    shown = jsonb.render(value)
    for _ in range(jsonb.MAX_DEPTH - 1):
        shown = shown["a"]
    assert shown == {"a": jsonb.TOO_DEEP}
    json.dumps(shown)  # what a response carries


def test_render_keeps_order_and_makes_every_value_json() -> None:
    value = {"z": 1, "a": [float("nan"), float("-inf"), "\ud800"], "password": "s3cret",
             "when": object(), "m": {"k": (1, 2)}}
    shown = jsonb.render(value, hidden=lambda key: key == "password", other=lambda _v: "obj")
    assert list(shown) == ["z", "a", "password", "when", "m"]
    assert shown == {"z": 1, "a": ["NaN", "-Infinity", "\\ud800"], "password": "***",
                     "when": "obj", "m": {"k": [1, 2]}}
    assert jsonb.render({"a": {"b": {"c": 1}}}, max_depth=2, too_deep="…") == {"a": {"b": "…"}}
