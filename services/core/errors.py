"""Sundial's exceptions: one base, subclasses whose docstring is the message."""


class SundialError(Exception):
    """Sundial error."""

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(SundialError):
    """A configuration value is invalid."""


class InvalidInput(SundialError):
    """The input is invalid."""

    def __init__(self, field: str, value: object, reason: str):
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field} {value!r}: {reason}")


class InvalidSchedule(InvalidInput):
    """The schedule is invalid."""


class InvalidDeclaration(InvalidInput):
    """A job declared in code is invalid: the message names the job, the field, the value
    and the fix."""

    def __init__(self, job: str, field: str, value: object, reason: str):
        self.job = job
        super().__init__(f"job {job!r}: {field}", value, reason)


class NotFound(SundialError):
    """No such object."""


class AlreadyExists(SundialError):
    """An object with that name already exists."""


class MigrationError(SundialError):
    """A migration could not be applied."""
