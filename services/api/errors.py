"""Errors of the control plane, each mapped to one HTTP status by sundial.api.app."""

from __future__ import annotations

from sundial.core.errors import SundialError


class Conflict(SundialError):
    """The object is not in a state that allows this."""


class Unauthorized(SundialError):
    """A valid API key is needed: send `Authorization: Bearer <key>`."""


class Forbidden(SundialError):
    """This API key's role may not do that."""
