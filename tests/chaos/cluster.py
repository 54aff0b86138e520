"""A three-node RabbitMQ cluster of its own on this machine, for the scenarios that lose
a node: Debian's `rabbitmq-server`, each node with its own name, AMQP and distribution
ports, data and log directories and configuration, all sharing one Erlang cookie (in a
HOME of their own) and the machine's epmd.

Nothing here touches the machine's own RabbitMQ (rabbit@localhost on 5672, which other
test runs share): the nodes read no file under /etc/rabbitmq, listen on free ports, and
`rabbitmqctl` reaches them by name with their cookie. `three_node_cluster` stops every
node and removes their files however the scenario ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ARTIFACTS, free_port

SBIN = Path("/usr/lib/rabbitmq/bin")
COOKIE = "SUNDIALCHAOSCLUSTERCOOKIE"
BOOT_TIMEOUT_S = 120


def available() -> bool:
    return (SBIN / "rabbitmq-server").exists() and (SBIN / "rabbitmqctl").exists()


@dataclass
class Node:
    name: str          # Erlang node name, e.g. sundial-chaos-1234-1@localhost
    port: int          # AMQP
    dist_port: int
    base: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 60, check: bool = True,
            tool: str = "rabbitmqctl") -> str:
        """`rabbitmqctl` (or another CLI tool) against this node; its stdout."""
        done = subprocess.run([str(SBIN / tool), "-n", self.name, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.name} failed "
                               f"({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        log = open(self.base / "server.out", "ab")
        self.process = subprocess.Popen([str(SBIN / "rabbitmq-server")], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()

    def wait_started(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited while booting: "
                                   f"{(self.base / 'server.out').read_text()[-3000:]}")
            try:
                # Refused at once until the node has registered with epmd.
                self.ctl("await_startup", "--timeout", "10", timeout=30)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def kill(self) -> None:
        """The node crashes: SIGKILL to its whole process group (beam, epmd child none)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, RuntimeError):
            self.ctl("stop", timeout=60, check=False)
            self.process.wait(30)
        self.kill()


def _node(root: Path, home: Path, n: int) -> Node:
    name = f"sundial-chaos-{os.getpid()}-{n}@localhost"
    port, dist_port = free_port(), free_port()
    base = root / f"node{n}"
    for sub in ("mnesia", "log"):
        (base / sub).mkdir(parents=True)
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{port}\n"
        # Keep a small disk from raising a disk alarm in the middle of a scenario.
        "disk_free_limit.absolute = 1MB\n")
    (base / "rabbitmq-env.conf").write_text("")
    (base / "enabled_plugins").write_text("[].\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    return Node(name, port, dist_port, base, env)


@dataclass
class Cluster:
    nodes: list[Node]

    @property
    def url(self) -> str:
        """RABBITMQ_URL naming every node."""
        return ",".join(n.url for n in self.nodes)

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def queue_leader(self, queue: str) -> Node | None:
        """The node that leads quorum queue `queue` (as a node still up reports it)."""
        out = self.alive()[0].ctl("-q", "list_queues", "name", "leader", "--no-table-headers")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return next((n for n in self.nodes if n.name == parts[1]), None)
        return None

    def members(self, queue: str) -> int:
        out = self.alive()[0].ctl("-q", "list_queues", "name", "members", "--no-table-headers")
        for line in out.splitlines():
            if line.split(maxsplit=1)[:1] == [queue]:
                return line.count("@")
        return 0


@contextlib.contextmanager
def three_node_cluster() -> Iterator[Cluster]:
    """Three nodes joined into one cluster; every node stopped and its files removed at
    the end."""
    root = Path(tempfile.mkdtemp(prefix="sundial-rabbit-cluster-"))
    home = root / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(COOKIE)
    cookie.chmod(0o400)
    nodes = [_node(root, home, n) for n in (1, 2, 3)]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_started()
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", nodes[0].name)
            node.ctl("start_app")
        running = nodes[0].ctl("cluster_status", "--formatter", "json")
        assert all(n.name in running for n in nodes), running
        yield Cluster(nodes)
    finally:
        for node in nodes:
            node.stop()
        # Each node's log, kept with the processes' logs for a failed scenario.
        logs = ARTIFACTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for node in nodes:
            for log in (node.base / "log").glob("*@localhost.log"):
                shutil.copy(log, logs / f"rabbit-cluster-{node.base.name}.log")
        shutil.rmtree(root, ignore_errors=True)
