"""The http and command handlers, run by a real `sundial worker`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import wait_for
from tests.e2e.test_worker import add_job, events, trigger, wait_final, worker_env


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect-to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        body = f"hello {self.headers.get('X-Token', '-')}".encode()
        self.send_response(200 if self.path == "/hello" else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _Recording(BaseHTTPRequestHandler):
    """Notes each request's path and headers in `server.seen`; redirects (302) the paths
    in `server.redirects` to their Location and answers 200 to the rest."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        location = self.server.redirects.get(self.path)
        self.send_response(302 if location else 200)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[Callable[[], ThreadingHTTPServer]]:
    servers: list[ThreadingHTTPServer] = []

    def start() -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
        server.seen, server.redirects = [], {}
        server.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


async def test_http_handler_calls_an_allowed_server_and_refuses_others(
        pool, db_url, amqp_url, queue, processes, http_server):
    env = worker_env(db_url, amqp_url, queue, WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32")
    processes(["worker"], env)
    port = http_server.rsplit(":", 1)[1]
    ok = await add_job(pool, queue, "http", {"url": f"{http_server}/hello",
                                             "headers": {"X-Token": "t1"}})
    unhealthy = await add_job(pool, queue, "http", {"url": f"{http_server}/down"}, max_attempts=1)
    refused = {
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "decimal": f"http://2130706433:{port}/hello",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/hello",
        "private": "http://10.1.2.3/",
        "redirect": f"{http_server}/redirect-to-metadata",
        "scheme": "file:///etc/passwd",
    }
    refused_jobs = {name: await add_job(pool, queue, "http", {"url": url}, max_attempts=3)
                    for name, url in refused.items()}

    [run_id] = await trigger(pool, amqp_url, ok)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded"
    assert row["result"]["status"] == 200 and row["result"]["body"] == "hello t1"

    [run_id] = await trigger(pool, amqp_url, unhealthy)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed" and "answered 503" in row["error"]

    for name, job in refused_jobs.items():
        [run_id] = await trigger(pool, amqp_url, job)
        row = await wait_final(pool, run_id)
        assert row["status"] == "failed", name
        assert "refused" in row["error"], (name, row["error"])
        assert row["attempt"] == 1, name  # a refused target is not retried


async def test_secret_fields_are_merged_into_the_payload(pool, db_url, amqp_url, queue, processes,
                                                         http_server):
    from cryptography.fernet import Fernet

    from sundial.core.secrets import encrypt_fields

    key = Fernet.generate_key().decode()
    env = worker_env(db_url, amqp_url, queue, WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.0/8",
                     ENCRYPTION_KEY=key)
    processes(["worker"], env)
    job = await add_job(pool, queue, "http", {"url": f"{http_server}/hello", "headers": {}},
                        secret_payload=encrypt_fields(key, {"headers": {"X-Token": "s3cret"}}))
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded" and row["result"]["body"] == "hello s3cret"


async def test_a_password_in_the_url_reaches_the_server_but_not_the_result_or_error(
        pool, db_url, amqp_url, queue, processes, recording_server):
    from cryptography.fernet import Fernet

    from sundial.core.secrets import encrypt_fields

    key = Fernet.generate_key().decode()
    server = recording_server()
    host = server.url.removeprefix("http://")
    processes(["worker"], worker_env(db_url, amqp_url, queue, ENCRYPTION_KEY=key,
                                     WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.0/8"))
    jobs = {}
    for path, expected in (("/ok", 200), ("/ok", 201)):   # 201 expected: the run fails
        jobs[expected] = await add_job(
            pool, queue, "http", {"url": f"http://robot:***@{host}{path}",
                                  "expected_status": expected},
            max_attempts=1, secret_payload=encrypt_fields(
                key, {"url": f"http://robot:Pa55word@{host}{path}"}))
    succeeded = await wait_final(pool, (await trigger(pool, amqp_url, jobs[200]))[0])
    failed = await wait_final(pool, (await trigger(pool, amqp_url, jobs[201]))[0])
    assert succeeded["status"] == "succeeded" and failed["status"] == "failed"
    assert all(seen[1]["authorization"].startswith("Basic ") for seen in server.seen)
    for row in (succeeded, failed):
        stored = f"{row['result']} {row['error']} {row['output']}"
        assert "Pa55word" not in stored and f"robot:***@{host}/ok" in stored, stored


async def test_credentials_do_not_follow_a_redirect_to_another_origin(
        pool, db_url, amqp_url, queue, processes, recording_server):
    from cryptography.fernet import Fernet

    from sundial.core.secrets import encrypt_fields

    key = Fernet.generate_key().decode()
    env = worker_env(db_url, amqp_url, queue, WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32",
                     ENCRYPTION_KEY=key)
    processes(["worker"], env)
    origin, other = recording_server(), recording_server()  # same host, another port
    origin.redirects = {"/away": f"{other.url}/landing", "/same": f"{origin.url}/landing"}
    payload = {"headers": {"Authorization": "***", "X-Api-Key": "***",
                           "Cookie": "session=c00kie", "X-Trace": "t1"},
               "secret_headers": ["x-api-key"]}
    secret = encrypt_fields(key, {"headers": {"Authorization": "Bearer s3cret", "X-Api-Key": "k3y"}})
    credentials = {"authorization": "Bearer s3cret", "x-api-key": "k3y", "cookie": "session=c00kie"}

    for path, target in (("/away", other), ("/same", origin)):
        job = await add_job(pool, queue, "http", {**payload, "url": f"{origin.url}{path}"},
                            secret_payload=secret)
        [run_id] = await trigger(pool, amqp_url, job)
        row = await wait_final(pool, run_id)
        assert row["status"] == "succeeded", row["error"]
        assert row["result"]["url"] == f"{target.url}/landing"

    sent = dict(origin.seen)
    for path in ("/away", "/same", "/landing"):
        assert credentials.items() <= sent[path].items(), path
    [(landing, received)] = other.seen
    assert landing == "/landing" and received["x-trace"] == "t1"
    assert not credentials.keys() & received.keys(), received


async def test_command_handler_is_off_unless_allowed(pool, db_url, amqp_url, queue, processes):
    worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
    job = await add_job(pool, queue, "command", {"argv": ["echo", "hi"]})
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed"
    assert "WORKER_ALLOW_COMMANDS" in row["error"] and row["started_at"] is None
    assert worker.stop() == 0


async def test_command_handler_never_uses_a_shell(pool, db_url, amqp_url, queue, processes,
                                                  tmp_path):
    env = worker_env(db_url, amqp_url, queue, WORKER_ALLOW_COMMANDS="true",
                     WORKER_COMMAND_ALLOWLIST="echo,sh")
    processes(["worker"], env)
    echo = await add_job(pool, queue, "command", {"argv": ["echo", "hi; touch x"],
                                                  "cwd": str(tmp_path)})
    fails = await add_job(pool, queue, "command", {"argv": ["sh", "-c", "echo oops >&2; exit 3"]},
                          max_attempts=1)
    forbidden = await add_job(pool, queue, "command", {"argv": ["touch", str(tmp_path / "y")]})

    [run_id] = await trigger(pool, amqp_url, echo)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded"
    assert row["result"]["stdout"] == "hi; touch x\n" and row["result"]["exit_code"] == 0
    assert not (tmp_path / "x").exists()

    [run_id] = await trigger(pool, amqp_url, fails)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed" and "exited with code 3" in row["error"]
    assert row["result"]["exit_code"] == 3 and row["output"] == "oops\n"

    [run_id] = await trigger(pool, amqp_url, forbidden)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed" and "WORKER_COMMAND_ALLOWLIST" in row["error"]
    assert not (tmp_path / "y").exists()


async def test_worker_survives_a_broker_outage(pool, db_url, amqp_url, queue, processes):
    """The broker goes away (every connection dropped, new ones refused) and comes back:
    the worker reconnects, registers its consumer again and keeps consuming. A TCP proxy
    stands in for a RabbitMQ restart so other test sessions sharing the server are not hit."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.faults import tcp_proxy

    parts = urlsplit(amqp_url)
    async with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        proxied = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}"
                                                   f"@127.0.0.1:{proxy.port}"))
        worker = processes(["worker"], worker_env(db_url, proxied, queue))
        job = await add_job(pool, queue, "noop")
        [before] = await trigger(pool, amqp_url, job)
        assert (await wait_final(pool, before))["status"] == "succeeded"

        await proxy.cut()
        [during] = await trigger(pool, amqp_url, job)  # waits in the queue
        await wait_for(lambda: events(worker, "broker.connection_lost"), 10,
                       what="the worker to notice the outage")
        await proxy.restore()
        await wait_for(lambda: events(worker, "broker.reconnected"), 30,
                       what="the worker to reconnect")
        assert (await wait_final(pool, during, timeout=40))["status"] == "succeeded"
        [after] = await trigger(pool, amqp_url, job)
        assert (await wait_final(pool, after))["status"] == "succeeded"
        assert worker.alive()
