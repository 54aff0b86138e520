"""JSON as PostgreSQL stores it, read, written and shown whatever its depth.

jsonb takes nesting thousands of levels deep (a row written by SQL, or before a limit
existed), deeper than Python's recursive json decoder and encoder go. `loads` reads any
depth and `dumps` writes it back; `render` makes a value fit to send in a response (cut at a depth, text and numbers
JSON can carry), without recursion, so no stored row can break a listing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from json.decoder import scanstring
from json.scanner import NUMBER_RE
from typing import Any

MAX_DEPTH = 32
TOO_DEEP = f"… (nested deeper than {MAX_DEPTH} levels; not shown)"
MASK = "***"

_SPACE = re.compile(r"[ \t\n\r]*")
_LITERALS = {"true": True, "false": False, "null": None}


def loads(text: str | bytes) -> Any:
    """json.loads, at any depth (with `dumps`, the codec of json and jsonb columns)."""
    try:
        return json.loads(text)
    except RecursionError:
        return _loads_flat(text.decode() if isinstance(text, bytes) else text)


def dumps(value: Any, separators: tuple[str, str] = (", ", ": ")) -> str:
    """json.dumps, at any depth (a stored value read with `loads` can be written back)."""
    try:
        return json.dumps(value, separators=separators)
    except RecursionError:
        return "".join(_dumps_flat(value, *separators))


def _dumps_flat(value: Any, comma: str, colon: str) -> Iterator[str]:
    # Each entry is a value to write or, for a closing bracket or separator, text as is.
    stack: list[tuple[bool, Any]] = [(False, value)]
    while stack:
        is_text, item = stack.pop()
        if is_text:
            yield item
        elif isinstance(item, dict) and item:
            parts: list[tuple[bool, Any]] = [(True, "{")]
            for n, (key, child) in enumerate(item.items()):
                parts += [(True, ("" if n == 0 else comma) + json.dumps(str(key)) + colon),
                          (False, child)]
            stack.extend(reversed([*parts, (True, "}")]))
        elif isinstance(item, list | tuple) and item:
            parts = [(True, "[")]
            for n, child in enumerate(item):
                parts += [(True, "" if n == 0 else comma), (False, child)]
            stack.extend(reversed([*parts, (True, "]")]))
        else:
            yield json.dumps(item)


def printable(text: str) -> str:
    """`text` as UTF-8 can carry it: a lone surrogate ("\\ud800") as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def render(value: Any, *, max_depth: int = MAX_DEPTH, too_deep: str = TOO_DEEP,
           text: Callable[[str], str] = printable,
           hidden: Callable[[str], bool] = lambda _key: False,
           other: Callable[[Any], Any] = repr) -> Any:
    """`value` as any JSON client can read it.

    Objects and lists deeper than `max_depth` (the value itself is level 1) become
    `too_deep`; NaN and infinities the strings "NaN", "Infinity", "-Infinity"; every
    string and key passes through `text`; the value of a key that `hidden` names is
    "***"; anything else is replaced by `other(value)` (JSON-like, else its repr).
    """
    root: list[Any] = [None]
    # (value, where its rendering goes, the slot there, its level, converted by `other`)
    stack: list[tuple[Any, Any, Any, int, bool]] = [(value, root, 0, 1, False)]
    while stack:
        item, parent, slot, depth, converted = stack.pop()
        if isinstance(item, str):
            parent[slot] = text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            parent[slot] = json.dumps(item)
        elif item is None or isinstance(item, bool | int | float):
            parent[slot] = item
        elif isinstance(item, dict | list | tuple):
            if depth > max_depth:
                parent[slot] = too_deep
                continue
            if isinstance(item, dict):
                out: Any = {}
                children = []
                for key, child in item.items():
                    name = text(str(key))
                    if hidden(name):
                        out[name] = MASK
                    else:
                        out[name] = None  # keeps the key's place until the value is rendered
                        children.append((child, out, name, depth + 1, False))
            else:
                out = [None] * len(item)
                children = [(child, out, i, depth + 1, False) for i, child in enumerate(item)]
            parent[slot] = out
            stack.extend(reversed(children))
        elif not converted:
            try:
                stack.append((other(item), parent, slot, depth, True))
            except (TypeError, ValueError, RecursionError):
                parent[slot] = text(repr(item))
        else:
            parent[slot] = text(repr(item))
    return root[0]


def _loads_flat(text: str) -> Any:
    """The JSON value in `text`, parsed with a stack of its own instead of recursion."""
    open_: list[dict[str, Any] | list[Any]] = []  # containers being filled, innermost last
    keys: list[str | None] = []  # the key each open object fills next
    i = _skip(text, 0)
    while True:
        char = text[i:i + 1]
        if char in ("{", "["):
            container: dict[str, Any] | list[Any] = {} if char == "{" else []
            i = _skip(text, i + 1)
            if text[i:i + 1] != ("}" if char == "{" else "]"):
                open_.append(container)
                key = None
                if char == "{":
                    key, i = _key(text, i)
                keys.append(key)
                continue
            value: Any = container
            i += 1
        elif char == '"':
            value, i = scanstring(text, i + 1)
        elif (number := NUMBER_RE.match(text, i)) is not None:
            whole, fraction, exponent = number.groups()
            value = float(number.group()) if fraction or exponent else int(whole)
            i = number.end()
        else:
            word = next((w for w in _LITERALS if text.startswith(w, i)), None)
            if word is None:
                raise json.JSONDecodeError("Expecting value", text, i)
            value, i = _LITERALS[word], i + len(word)
        # Put the value in its container; close the containers that end here.
        while True:
            i = _skip(text, i)
            if not open_:
                if i != len(text):
                    raise json.JSONDecodeError("Extra data", text, i)
                return value
            parent = open_[-1]
            if isinstance(parent, dict):
                parent[keys[-1]] = value  # type: ignore[index]
            else:
                parent.append(value)
            char = text[i:i + 1]
            if char == ",":
                i = _skip(text, i + 1)
                if isinstance(parent, dict):
                    keys[-1], i = _key(text, i)
                break
            if char != ("}" if isinstance(parent, dict) else "]"):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            value = open_.pop()
            keys.pop()
            i += 1


def _key(text: str, i: int) -> tuple[str, int]:
    if text[i:i + 1] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
    key, i = scanstring(text, i + 1)
    i = _skip(text, i)
    if text[i:i + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
    return key, _skip(text, i + 1)


def _skip(text: str, i: int) -> int:
    return _SPACE.match(text, i).end()  # type: ignore[union-attr]
