"""Sundial's Python client (docs/client.md).

- `Client` / `AsyncClient`: the API over HTTP: trigger a job with arguments and an
  idempotency key, read a run, wait for it to finish.
- `defer` / `defer_sync`: queue a run inside your own database transaction (asyncpg, or
  psycopg 3 with the `sundial[psycopg]` extra): it exists if and when you commit.
"""

from sundial.client.defer import defer, defer_sync
from sundial.client.http import ApiError, AsyncClient, Client, Problem, Run, WaitTimeout

__all__ = ["ApiError", "AsyncClient", "Client", "Problem", "Run", "WaitTimeout", "defer",
           "defer_sync"]
