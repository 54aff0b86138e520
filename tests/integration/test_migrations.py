"""Migrations apply to an empty database, record themselves, and are safe to repeat."""

import asyncio

import asyncpg

from sundial.core.migrate import discover, migrate

EXPECTED_TABLES = {"jobs", "schedules", "runs", "workers", "scheduler_instances",
                   "system_settings", "api_keys", "audit_log", "schema_migrations"}


async def test_fresh_database_has_every_table_and_the_slot_key(db_url):
    conn = await asyncpg.connect(db_url)
    try:
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert EXPECTED_TABLES <= tables
        versions = [r["version"] for r in await conn.fetch(
            "SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [m.version for m in discover()]
        unique = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'runs_slot_unique'")
        assert unique == "UNIQUE (schedule_id, scheduled_for)"
        index = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'schedules_due'")
        assert "WHERE is_active" in index
    finally:
        await conn.close()


async def test_migrate_twice_and_concurrently_applies_nothing_more(servers):
    admin = await asyncpg.connect(servers[0])
    name = "sundial_t_migrate_race"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = servers[0].rsplit("/", 1)[0] + "/" + name
    try:
        conns = [await asyncpg.connect(url) for _ in range(3)]
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(v for r in results for v in r)
        assert applied == [m.version for m in discover()], "each migration applied exactly once"
        assert await migrate(conns[0]) == []
        for c in conns:
            await c.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_services_wait_for_migrations_and_commands_say_what_is_missing(
        servers, amqp_url, processes):
    """A service started before `sundial migrate` (a Kubernetes Job, the compose migrate
    service) logs what is missing and starts once it is applied; an admin command exits 1
    naming the missing migrations instead of a traceback."""
    import subprocess
    import sys

    from tests.conftest import ROOT, free_port, service_env, wait_for

    admin = await asyncpg.connect(servers[0])
    name = "sundial_t_not_migrated"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = servers[0].rsplit("/", 1)[0] + "/" + name
    env = service_env(url, amqp_url, WORKER_QUEUES=f"nm{name}")
    try:
        listing = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "sundial", "jobs", "list"], env=env,
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert listing.returncode == 1
        assert listing.stderr.strip().startswith("sundial: the database lacks migration(s) 0001_init")
        assert "run `sundial migrate`" in listing.stderr and "Traceback" not in listing.stderr
        services = [processes([service], env) for service in ("scheduler", "worker")]
        api = processes(["api"], {**env, "API_PORT": str(free_port())})
        for p in [*services, api]:
            await wait_for(lambda p=p: '"database.not_migrated"' in p.output(), timeout=60,
                           what=f"{p.args[0]} to say the database is not migrated")
            assert p.alive()
        assert api.stop() == 0, "SIGTERM ends a service that waits for its migrations"
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        for p, started in zip(services, ('"scheduler.started"', '"worker.consuming"'), strict=True):
            await wait_for(lambda p=p, started=started: started in p.output(), timeout=60,
                           what=f"{p.args[0]} to start once migrated")
            assert "Traceback" not in p.output()
        assert [p.stop() for p in services] == [0, 0]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
