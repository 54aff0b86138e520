"""Queue a Sundial run in your own transaction, then wait for it over HTTP (docs/client.md).

With `make run` going (it prints the admin key), in another terminal:

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/sundial \
    SUNDIAL_API_URL=http://127.0.0.1:8000 SUNDIAL_API_KEY=<the admin key> \
        .venv/bin/python examples/client_defer.py

An order and the run that reports on it are written in one transaction of Sundial's
database: both exist once it commits, and neither if it rolls back.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from sundial.client import AsyncClient, defer


class PaymentDeclined(Exception):
    pass


async def place_order(conn: asyncpg.Connection, item: str, pay: bool) -> int:
    """The application's own write and the run it needs, committed together."""
    async with conn.transaction():
        order_id = await conn.fetchval(
            "INSERT INTO example_orders (item) VALUES ($1) RETURNING id", item)
        run = await defer(conn, "reports.summary", {"kwargs": {"scope": f"order {order_id}"}},
                          idempotency_key=f"order-{order_id}")
        if not pay:
            raise PaymentDeclined(item)  # the transaction rolls back: no order, no run
    return run.id


async def main() -> None:
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS example_orders "
                           "(id bigserial PRIMARY KEY, item text NOT NULL)")
        run_id = await place_order(conn, "tea", pay=True)
        print(f"order placed; run {run_id} queued")
        try:
            await place_order(conn, "caviar", pay=False)
        except PaymentDeclined:
            print("rolled back: no order, no run")
    finally:
        await conn.close()

    async with AsyncClient(os.environ["SUNDIAL_API_URL"], os.environ["SUNDIAL_API_KEY"]) as sundial:
        run = await sundial.wait(run_id, timeout=60)
    print(f"run {run.id} {run.status}: {run['result']}")


if __name__ == "__main__":
    asyncio.run(main())
