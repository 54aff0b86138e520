"""Secret job fields at rest: a Fernet token (ENCRYPTION_KEY) of a JSON object.

`jobs.secret_payload` holds `encrypt_fields(key, {...})`; the worker merges
`decrypt_fields(key, token)` into the payload at execution. The API encrypts on write
and never returns the plain values.
"""

from __future__ import annotations

import ctypes
import json
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken

from sundial.core.errors import ConfigError, SundialError


class SecretError(SundialError):
    """The secret fields cannot be decrypted: was ENCRYPTION_KEY changed?"""


def _fernet(key: str | None) -> Fernet:
    if not key:
        raise ConfigError("ENCRYPTION_KEY is not set: it is needed for secret job fields "
                          "(python -c 'from cryptography.fernet import Fernet; "
                          "print(Fernet.generate_key().decode())')")
    return Fernet(key.encode())


def encrypt_fields(key: str | None, fields: dict[str, Any]) -> str:
    """The token to store in jobs.secret_payload."""
    if not isinstance(fields, dict):
        raise ValueError("secret fields must be a JSON object")
    return _fernet(key).encrypt(json.dumps(fields, separators=(",", ":")).encode()).decode()


def decrypt_fields(key: str | None, token: str) -> dict[str, Any]:
    try:
        fields = json.loads(_fernet(key).decrypt(token.encode()))
    except (InvalidToken, ValueError):
        raise SecretError() from None
    if not isinstance(fields, dict):
        raise SecretError("the secret fields are not a JSON object")
    return fields


def merge_secrets(payload: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
    """The payload with the secret fields merged in; nested objects merge key by key
    (so a secret `headers.Authorization` joins the plain `headers`)."""
    merged = dict(payload)
    for name, value in secrets.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = merge_secrets(merged[name], value)
        else:
            merged[name] = value
    return merged


# --- a password in a URL's user info ---------------------------------------------------

MASK = "***"  # what a secret value is shown as


def masked_url(url: str) -> str:
    """The URL with the password in its user info shown as "***" (else unchanged): what
    may be stored in plain text, shown, logged or put in an error."""
    return url if url_password(url) is None else with_password(url, MASK)


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:{password}@{host}"))


def url_password(url: str) -> str | None:
    if "@" not in url:
        return None
    try:
        return urlsplit(url).password or None
    except ValueError:  # a malformed port or IPv6 literal: no URL to take a password from
        return None


DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(a: str, b: str) -> bool:
    """Scheme, host and port alike (a scheme's default port written or not): where a
    credential written for one may go."""
    try:
        return _origin(a) == _origin(b)
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme)


# --- the process's own secrets --------------------------------------------------------

PR_SET_DUMPABLE = 4


def hide_process_secrets() -> bool:
    """Linux: make this process non-dumpable, so another process of the same user (a
    `command` job, whatever it runs) cannot read its environment from
    /proc/<pid>/environ, its memory from /proc/<pid>/mem, or attach a debugger. A child
    that execs is dumpable again, with its own environment. False where not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
