"""Which database errors a worker or scheduler waits out, and which it raises at once."""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import pytest

from sundial.core.db import is_transient


@pytest.mark.parametrize("exc, transient", [
    (OSError("connection refused"), True),
    (asyncpg.ConnectionDoesNotExistError("gone"), True),
    (asyncpg.exceptions.ReadOnlySQLTransactionError("read-only after a failover"), True),
    # Several hosts, none writable yet (the primary gone, the standby not promoted).
    (asyncpg.exceptions.TargetServerAttributeNotMatched("no host matches read-write"), True),
    (asyncpg.exceptions.QueryCanceledError("statement timeout"), True),
    (asyncpg.exceptions.DeadlockDetectedError("deadlock"), True),
    (asyncpg.exceptions.SerializationError("serialization failure"), True),
    (asyncpg.exceptions.LockNotAvailableError("lock not available"), True),
    (asyncpg.exceptions.TooManyConnectionsError("too many"), True),
    (asyncpg.exceptions.UndefinedColumnError("a bug in a query"), False),
    (asyncpg.exceptions.CheckViolationError("refused data"), False),
    (asyncpg.exceptions.NumericValueOutOfRangeError("refused data"), False),
    (asyncpg_base.DataError("an argument the driver cannot encode"), False),
    (ValueError("not a database error"), False),
])
def test_only_errors_that_pass_are_waited_out(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
