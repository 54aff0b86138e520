"""Scenario 9, what is not already covered elsewhere: a canary secret never appears in
any process's logs or in plaintext in the database.

Covered by other tests (not repeated here): schemathesis over the API with no key, a
viewer and an admin key (tests/integration/test_api_fuzz*.py); SSRF refusals for
loopback, ::1, 169.254.169.254, IPv4-mapped and decimal/hex/octal IPs
(tests/integration/test_worker_netguard.py), at job creation
(tests/integration/test_api.py) and at delivery, redirects included
(tests/e2e/test_worker_handlers.py); command arguments with shell syntax staying
arguments (tests/e2e/test_worker_handlers.py::test_command_handler_never_uses_a_shell).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import asyncpg
from cryptography.fernet import Fernet

from sundial.core.secrets import encrypt_fields
from tests.chaos.stack import manual_runs, scheduler_env, seeded, worker_env
from tests.conftest import wait_for


class Failing(BaseHTTPRequestHandler):
    """Answers 500 (so the error paths log too), never echoing what it was sent."""

    def do_GET(self) -> None:
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"server error")

    def log_message(self, *args: object) -> None:
        pass


async def test_a_canary_secret_stays_out_of_logs_and_plaintext(db_url, amqp_url, queue,
                                                               processes):
    seed, _ = seeded()
    canary = f"canary-{uuid.uuid4().hex}"
    key = Fernet.generate_key().decode()
    server = HTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = await asyncpg.connect(db_url)
    try:
        job = await conn.fetchval(
            """INSERT INTO jobs (name, handler, queue, payload, secret_payload, max_attempts,
                                 retry_backoff_seconds)
               VALUES ('canary', 'http', $1, $2::jsonb, $3, 2, 0.5) RETURNING id""",
            queue, json.dumps({"url": f"http://127.0.0.1:{server.server_port}/x"}),
            encrypt_fields(key, {"headers": {"Authorization": f"Bearer {canary}"}}))
        env = dict(ENCRYPTION_KEY=key, LOG_LEVEL="DEBUG")
        started = [processes(["scheduler"], scheduler_env(db_url, amqp_url, **env)),
                   processes(["worker"], worker_env(db_url, amqp_url, queue,
                                                    WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32",
                                                    **env))]
        [run_id] = await manual_runs(conn, job, 1)
        await wait_for(lambda: conn.fetchval(
            "SELECT status = 'failed' FROM runs WHERE id = $1", run_id), 60,
            what="the canary run to fail after its retry")
        for p in started:
            p.stop()
        for p in started:
            assert canary not in p.output(), f"canary in the {p.args[0]} log"
        tables = [r["relname"] for r in await conn.fetch(
            "SELECT relname FROM pg_stat_user_tables")]
        for table in tables:
            leaked = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE $1', f"%{canary}%")
            assert leaked == 0, f"seed={seed}: canary in plaintext in {table}"
        print(f"chaos-check seed={seed} canary absent from {len(started)} logs and "
              f"{len(tables)} tables")
    finally:
        server.shutdown()
        await conn.close()
