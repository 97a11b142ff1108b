"""Two replicas of every service on a three-node NATS cluster, under failures.

Three nats-servers on loopback form a JetStream cluster, the ticket stream
has three replicas, and every service runs twice. 1,000 forms are submitted
through both gateways. Meanwhile the NATS server that leads the ticket
stream is killed and started again with its store. Then one replica of each
service is killed and left dead, so the survivors take over its work.

A reporter whose submission gets a 503 posts the same form again, and one
whose gateway drops the connection posts it through the other gateway, as a
load balancer would send it. So every form is eventually accepted, and the
checks are: every accepted form is stored exactly once, the replicas shared
the work, and the created events of all tickets left the outbox. The number
of failed responses and the recovery times are printed, not asserted,
because they depend on the machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import Client

from linkdesk.processes import SERVICES, Stack
from services.gateway import form_token
from shared import subjects
from shared.embedded import LOOPBACK, EmbeddedNats, EmbeddedNatsCluster
from tests.helpers import VALID_FIELDS, Admin, TenantFixture, open_link, post_form
from tests.helpers import form_token as token_of_page

pytestmark = pytest.mark.slow

SUBMISSIONS = 1_000
WORKERS = 8
"""Concurrent reporters. Each thread submits one form at a time."""

KILL_NATS_AFTER = 200
RESTART_NATS_AFTER = 350
KILL_REPLICAS_AFTER = 600
"""Forms finished (accepted or given up) before each failure is injected."""

RESTART_BEFORE_FORM = 400
KILL_REPLICAS_BEFORE_FORM = 700
"""Forms from these numbers on wait for the restart and for the kill, so the
load cannot end before a failure, however fast the machine."""

GATE_TIMEOUT_SECONDS = 60.0

MIN_NATS_DOWNTIME_SECONDS = 5.0
"""The killed NATS server stays down at least this long, however fast the load."""

MAX_ATTEMPTS = 40
"""Requests per step (open the link, post the form) before the form is given up."""

RETRY_PAUSE_SECONDS = 0.5
"""Pause after a 503. The page's `Retry-After` requests 10 s, and a shorter
pause only makes the retries more frequent, which keeps the test short."""

LOAD_TIMEOUT_SECONDS = 150.0
STORE_TIMEOUT_SECONDS = 60.0
"""Wait for the last tickets after the load. It covers the ack wait below:
messages that the killed ticket replica held are delivered again after it."""

TICKET_ACK_WAIT_SECONDS = "10"
"""Shorter than the default of 30 s, so the killed replica's messages come
back sooner and the test ends sooner."""


ADMIN_TOKEN = secrets.token_urlsafe(32)
FORM_KEY = secrets.token_urlsafe(32)


@dataclass
class Attempt:
    """One request of a reporter and how it ended."""

    at: float
    gateway: int
    step: str
    outcome: str


@dataclass
class Form:
    """One rendered form and what became of it."""

    index: int
    submission_id: str | None = None
    posts: int = 0
    accepted_by: int | None = None

    @property
    def accepted(self) -> bool:
        return self.accepted_by is not None


@dataclass
class Failure:
    name: str
    at: float


class Recorder:
    """Thread-safe record of the load: every request, every form, the failures."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.attempts: list[Attempt] = []
        self.forms: list[Form] = []
        self.failures: list[Failure] = []
        self.finished = 0
        self.nats_restarted = threading.Event()
        self.replicas_killed = threading.Event()
        self._changed = threading.Condition()

    def attempt(self, gateway: int, step: str, outcome: str) -> None:
        with self._changed:
            self.attempts.append(Attempt(time.monotonic(), gateway, step, outcome))

    def form_done(self, form: Form) -> None:
        with self._changed:
            self.forms.append(form)
            self.finished += 1
            self._changed.notify_all()

    def failure(self, name: str) -> None:
        with self._changed:
            self.failures.append(Failure(name, time.monotonic()))

    def wait_for_failures(self, index: int) -> None:
        """Hold form `index` until the failures planned before it happened."""
        if index >= RESTART_BEFORE_FORM:
            self.nats_restarted.wait(GATE_TIMEOUT_SECONDS)
        if index >= KILL_REPLICAS_BEFORE_FORM:
            self.replicas_killed.wait(GATE_TIMEOUT_SECONDS)

    def wait_finished(self, count: int, timeout: float) -> bool:
        """Wait until `count` forms are finished. Return False after `timeout`."""
        with self._changed:
            return self._changed.wait_for(lambda: self.finished >= count, timeout)


class Gateways:
    """Both gateways, used in turn. A gateway that refuses connections is
    skipped from then on, as a load balancer's health check would do."""

    def __init__(self, urls: list[str]) -> None:
        self.clients = [
            httpx.Client(base_url=url, follow_redirects=False, timeout=15.0)
            for url in urls
        ]
        self.down: set[int] = set()
        self._lock = threading.Lock()

    def pick(self, preferred: int) -> int:
        with self._lock:
            for offset in range(len(self.clients)):
                index = (preferred + offset) % len(self.clients)
                if index not in self.down:
                    return index
        return preferred

    def mark_down(self, index: int) -> None:
        with self._lock:
            self.down.add(index)

    def close(self) -> None:
        for client in self.clients:
            client.close()


class Reporter:
    """Submits one form the way a person would: retry on 503, repost the same form."""

    def __init__(
        self,
        gateways: Gateways,
        recorder: Recorder,
        link_query: str,
        form_key: bytes,
        stop: threading.Event,
    ) -> None:
        self.gateways = gateways
        self.recorder = recorder
        self.link_query = link_query
        self.form_key = form_key
        self.stop = stop

    def submit(self, index: int) -> None:
        self.recorder.wait_for_failures(index)
        form = Form(index)
        try:
            self._submit(form)
        finally:
            self.recorder.form_done(form)

    def _submit(self, form: Form) -> None:
        preferred = form.index % 2
        token = self._open(preferred)
        if token is None:
            return
        form.submission_id = form_token.verify(self.form_key, token).submission_id
        fields = {**VALID_FIELDS, "subject": f"Lasttest {form.index:04d}"}
        for _ in range(MAX_ATTEMPTS):
            if self.stop.is_set():
                return
            gateway = self.gateways.pick(preferred)
            form.posts += 1
            try:
                response = post_form(self.gateways.clients[gateway], token, fields)
            except httpx.TransportError as exc:
                self._connection_failed(gateway, "submit", exc)
                preferred = 1 - gateway
                continue
            if response.status_code == 303:
                self.recorder.attempt(gateway, "submit", "303")
                form.accepted_by = gateway
                return
            assert response.status_code == 503, (
                f"form {form.index}: unexpected {response.status_code} "
                f"from gateway {gateway}: {response.text[:300]}"
            )
            self.recorder.attempt(gateway, "submit", "503")
            time.sleep(RETRY_PAUSE_SECONDS)

    def _open(self, preferred: int) -> str | None:
        """Open the link until the form comes, and return its token (None when
        every attempt failed)."""
        for _ in range(MAX_ATTEMPTS):
            if self.stop.is_set():
                return None
            gateway = self.gateways.pick(preferred)
            try:
                page = open_link(self.gateways.clients[gateway], self.link_query)
            except httpx.TransportError as exc:
                self._connection_failed(gateway, "open", exc)
                preferred = 1 - gateway
                continue
            if page.status_code == 200:
                self.recorder.attempt(gateway, "open", "200")
                return token_of_page(page)
            assert page.status_code == 503, (
                f"unexpected {page.status_code} from gateway {gateway}: "
                f"{page.text[:300]}"
            )
            self.recorder.attempt(gateway, "open", "503")
            time.sleep(RETRY_PAUSE_SECONDS)
        return None

    def _connection_failed(
        self, gateway: int, step: str, exc: httpx.TransportError
    ) -> None:
        self.recorder.attempt(gateway, step, f"connection_error:{type(exc).__name__}")
        if isinstance(exc, httpx.ConnectError):
            self.gateways.mark_down(gateway)


# --- NATS helpers -----------------------------------------------------------


@contextlib.asynccontextmanager
async def nats_client(servers: list[str]) -> AsyncIterator[Client]:
    nc = await nats.connect(servers=servers, connect_timeout=2)
    try:
        yield nc
    finally:
        await nc.close()


async def stream_leader(servers: list[str]) -> str:
    """Return the server name of the ticket stream's leader, such as `n2`."""
    async with nats_client(servers) as nc:
        info = await nc.jetstream(timeout=5.0).stream_info(subjects.TICKET_STREAM)
    assert info.cluster is not None, "the ticket stream reports no cluster"
    assert info.config.num_replicas == 3, info.config
    assert info.cluster.leader, info.cluster
    return str(info.cluster.leader)


async def service_stats(
    servers: list[str], service: str, expected: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Ask every instance of a nats.micro service for its statistics.

    Returns the replies that arrived until `expected` did or `timeout`
    passed. Each reply contains one instance's counts.
    """
    replies: list[dict[str, Any]] = []
    async with nats_client(servers) as nc:
        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox)
        await nc.publish(f"$SRV.STATS.{service}", b"", reply=inbox)
        deadline = time.monotonic() + timeout
        while len(replies) < expected and time.monotonic() < deadline:
            try:
                msg = await subscription.next_msg(
                    timeout=max(deadline - time.monotonic(), 0.01)
                )
            except nats.errors.TimeoutError:
                break
            replies.append(json.loads(msg.data))
    return replies


def requests_served(stats: dict[str, Any]) -> int:
    return sum(int(endpoint["num_requests"]) for endpoint in stats["endpoints"])


# --- failures ---------------------------------------------------------------


@dataclass
class FailureReport:
    killed_nats: str = ""
    clients_of_killed_nats: list[str] = field(default_factory=list)
    nats_catch_up_seconds: float | None = None
    stats_before_kill: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    error: BaseException | None = None


def client_names(node: EmbeddedNats) -> list[str]:
    """Return the client names that connections to `node` set, from `/connz`."""
    url = f"http://{LOOPBACK}:{node.monitor_port}/connz?limit=1024"
    with urllib.request.urlopen(url, timeout=5) as response:
        connz = json.load(response)
    names = (str(c.get("name") or "") for c in connz.get("connections") or [])
    return sorted(name for name in names if name)


def watch_catch_up(node: EmbeddedNats, report: FailureReport) -> None:
    """Record how long a restarted server takes to pass its full health check."""
    started = time.monotonic()
    deadline = started + 60.0
    while time.monotonic() < deadline:
        if node.health_ok():
            report.nats_catch_up_seconds = time.monotonic() - started
            return
        time.sleep(0.1)


def inject_failures(
    cluster: EmbeddedNatsCluster,
    stack: Stack,
    recorder: Recorder,
    report: FailureReport,
) -> None:
    """Kill and restart the stream's leader, then kill one replica of each
    service, each once enough forms are finished."""
    try:
        recorder.wait_finished(KILL_NATS_AFTER, LOAD_TIMEOUT_SECONDS)
        report.killed_nats = asyncio.run(stream_leader(cluster.urls))
        node = cluster.node(report.killed_nats)
        report.clients_of_killed_nats = client_names(node)
        recorder.failure(f"nats server {node.server_name} killed")
        node.kill()
        killed_at = time.monotonic()

        recorder.wait_finished(RESTART_NATS_AFTER, 30.0)
        time.sleep(max(0.0, killed_at + MIN_NATS_DOWNTIME_SECONDS - time.monotonic()))
        recorder.failure(f"nats server {node.server_name} restarted")
        node.start()
        recorder.nats_restarted.set()
        catch_up = threading.Thread(
            target=watch_catch_up, args=(node, report), name="watch-catch-up"
        )
        catch_up.start()

        recorder.wait_finished(KILL_REPLICAS_AFTER, LOAD_TIMEOUT_SECONDS)
        for service in ("tenant", "personnel"):
            report.stats_before_kill[service] = asyncio.run(
                service_stats(cluster.urls, f"linkdesk-{service}", expected=2)
            )
        recorder.failure("one replica of each service killed")
        for name in SERVICES:
            stack.instances(name)[1].kill()
        recorder.replicas_killed.set()
        catch_up.join(timeout=70.0)
    except BaseException as exc:
        report.error = exc
    finally:
        # After an error, the held forms go on rather than wait for nothing.
        recorder.nats_restarted.set()
        recorder.replicas_killed.set()


# --- the test -----------------------------------------------------------------


def start_replicated(stack: Stack) -> None:
    """Start every service, then a second process of each."""
    stack.start(timeout=60.0)
    replicas = [stack.add_replica(name) for name in SERVICES]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.wait_ready(timeout=60.0)


@pytest.fixture
async def replicated_stack(
    nats_cluster: EmbeddedNatsCluster, own_database: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    """Two processes of every service, each with every NATS server in NATS_URL."""
    stack = Stack(
        nats_url=nats_cluster.url,
        database_url=own_database,
        log_dir=tmp_path / "logs",
        admin_tokens=f"tests:{ADMIN_TOKEN}",
        form_key=FORM_KEY,
        extra_env={
            "TICKET_STREAM_REPLICAS": "3",
            "TICKET_ACK_WAIT_SECONDS": TICKET_ACK_WAIT_SECONDS,
            # One person submits every form, far more than the gateway's
            # submission rate limits allow, and 0 switches a limit off.
            "GATEWAY_SUBMISSIONS_PER_PERSON": "0",
            "GATEWAY_SUBMISSIONS_PER_TENANT": "0",
            # Without the lookup cache every open and post sends requests to
            # tenant and personnel, so their replicas' failover shows in counts.
            "GATEWAY_CACHE_TTL_SECONDS": "0",
        },
    )
    ticket = stack.services["ticket"]
    # The counts in each ticket process's `tickets_stored` lines show its
    # share, and DEBUG keeps those lines whatever level the service logs them at.
    ticket.env = {**ticket.env, "LOG_LEVEL": "DEBUG"}
    try:
        await asyncio.to_thread(start_replicated, stack)
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


def form_key_bytes() -> bytes:
    return base64.urlsafe_b64decode(FORM_KEY + "=" * (-len(FORM_KEY) % 4))


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    """Return the JSON log records of `event` in one process's log file."""
    records = []
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            records.append(record)
    return records


async def stored_submissions(database_url: str, tenant_id: str) -> Counter[str]:
    """Count the stored tickets per submission id, read from PostgreSQL."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT submission_id::text AS id, count(*) AS n FROM ticket.tickets "
            "WHERE tenant_id = $1::uuid GROUP BY 1",
            tenant_id,
        )
    finally:
        await connection.close()
    return Counter({row["id"]: int(row["n"]) for row in rows})


async def query_value(database_url: str, sql: str) -> Any:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def wait_until_stored(
    database_url: str, tenant_id: str, accepted: set[str]
) -> tuple[Counter[str], float]:
    """Poll PostgreSQL until every accepted id is stored or the timeout passes."""
    started = time.monotonic()
    deadline = started + STORE_TIMEOUT_SECONDS
    while True:
        stored = await stored_submissions(database_url, tenant_id)
        if accepted <= stored.keys() or time.monotonic() > deadline:
            return stored, time.monotonic() - started
        await asyncio.sleep(0.5)


async def wait_until_outbox_sent(database_url: str) -> int:
    """Poll until the outbox contains no unsent event, and return the unsent
    count."""
    deadline = time.monotonic() + STORE_TIMEOUT_SECONDS
    while True:
        unsent = int(
            await query_value(
                database_url, "SELECT count(*) FROM ticket.outbox WHERE sent_at IS NULL"
            )
        )
        if unsent == 0 or time.monotonic() > deadline:
            return unsent
        await asyncio.sleep(0.5)


def print_summary(
    recorder: Recorder, report: FailureReport, load_seconds: float, store_wait: float
) -> None:
    """Print the failed responses and recovery times of the run."""
    print(f"\nscale-out: {len(recorder.forms)} forms in {load_seconds:.1f} s")
    ended = recorder.started + load_seconds
    boundaries = [*recorder.failures, Failure("end", ended)]
    phases = [Failure("steady", recorder.started), *recorder.failures]
    for phase, following in zip(phases, boundaries, strict=True):
        inside = [a for a in recorder.attempts if phase.at <= a.at < following.at]
        failed = [a for a in inside if a.outcome not in ("200", "303")]
        outcomes = Counter(f"{a.step} {a.outcome}" for a in failed)
        recovery = (
            f", last failure {max(a.at for a in failed) - phase.at:.1f} s after it"
            if failed
            else ""
        )
        print(
            f"  {phase.name}: {len(inside)} requests in "
            f"{following.at - phase.at:.1f} s, {len(failed)} failed"
            f"{recovery}: {dict(outcomes) or 'none'}"
        )
    print(
        f"  clients of nats server {report.killed_nats} when it was killed: "
        f"{report.clients_of_killed_nats}"
    )
    if report.nats_catch_up_seconds is not None:
        print(
            f"  nats server {report.killed_nats} healthy again "
            f"{report.nats_catch_up_seconds:.1f} s after its restart"
        )
    print(f"  every accepted form stored {store_wait:.1f} s after the load ended")


def run_load(
    cluster: EmbeddedNatsCluster,
    stack: Stack,
    tenant: TenantFixture,
    recorder: Recorder,
    report: FailureReport,
) -> None:
    """Submit every form while a second thread injects the failures.

    Fails when forms are unfinished after LOAD_TIMEOUT_SECONDS, and the
    reporters then stop at their next request.
    """
    stop = threading.Event()
    gateways = Gateways([process.url for process in stack.instances("gateway")])
    reporter = Reporter(gateways, recorder, tenant.link_query(), form_key_bytes(), stop)
    failures = threading.Thread(
        target=inject_failures,
        args=(cluster, stack, recorder, report),
        name="inject-failures",
        daemon=True,
    )
    failures.start()
    try:
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="reporter") as pool:
            futures = [pool.submit(reporter.submit, i) for i in range(SUBMISSIONS)]
            _, pending = wait_for_futures(futures, timeout=LOAD_TIMEOUT_SECONDS)
            if pending:
                stop.set()
            for future in futures:
                future.result()
        assert not pending, f"{len(pending)} forms unfinished after the time limit"
    finally:
        stop.set()
        gateways.close()
        failures.join(timeout=90.0)
    assert not failures.is_alive(), "injecting the failures did not finish"
    assert report.error is None, f"injecting the failures failed: {report.error!r}"


@pytest.mark.timeout(360)
async def test_replicas_survive_node_and_process_kills(
    replicated_stack: Stack,
    nats_cluster: EmbeddedNatsCluster,
    own_database: str,
) -> None:
    stack = replicated_stack
    with Admin(stack, ADMIN_TOKEN) as admin:
        tenant = admin.create_tenant_with_person("004711", "Jörg Bäcker")
    assert await stream_leader(nats_cluster.urls) in {"n1", "n2", "n3"}

    recorder = Recorder()
    report = FailureReport()
    started = time.monotonic()
    await asyncio.to_thread(run_load, nats_cluster, stack, tenant, recorder, report)
    load_seconds = time.monotonic() - started

    forms = sorted(recorder.forms, key=lambda form: form.index)
    accepted = {f.submission_id for f in forms if f.accepted and f.submission_id}
    given_up = [f for f in forms if not f.accepted]
    stored, store_wait = await wait_until_stored(own_database, tenant.id, accepted)
    print_summary(recorder, report, load_seconds, store_wait)

    # Every failure happened while forms were still being submitted, and the
    # restarted NATS server caught up with the others.
    assert len(recorder.failures) == 3, recorder.failures
    assert report.nats_catch_up_seconds is not None, "restarted server unhealthy"
    assert recorder.failures[-1].at < max(a.at for a in recorder.attempts)

    # Every accepted form is stored, and stored once.
    missing = accepted - stored.keys()
    assert not missing, (
        f"{len(missing)} accepted forms not stored: {sorted(missing)[:5]}"
    )
    duplicates = await query_value(
        own_database,
        "SELECT count(*) FROM (SELECT submission_id FROM ticket.tickets "
        "GROUP BY 1 HAVING count(*) > 1) AS repeated",
    )
    assert duplicates == 0
    # A form that was never accepted may still be stored when its publish
    # was acknowledged after the gateway gave up waiting. The reporter posts
    # such a form again, so that can only remain for a form given up on.
    posted_but_not_accepted = {f.submission_id for f in given_up if f.posts}
    assert stored.keys() - accepted <= posted_but_not_accepted

    # Every form was accepted in the end: the system recovered each time.
    assert len(forms) == SUBMISSIONS
    assert given_up == [], [(f.index, f.posts) for f in given_up]
    assert len(accepted) == SUBMISSIONS

    # The created event of every ticket left the outbox.
    assert await wait_until_outbox_sent(own_database) == 0

    # Both gateways accepted forms.
    per_gateway = Counter(f.accepted_by for f in forms)
    print(f"  forms accepted per gateway: {dict(per_gateway)}")
    for process in stack.instances("gateway"):
        accepted_lines = log_events(process.log_path, "submission_accepted")
        repeated_lines = log_events(process.log_path, "submission_duplicate")
        print(
            f"  gateway {process.log_path.name}: {len(accepted_lines)} accepted, "
            f"{len(repeated_lines)} already accepted"
        )
        assert accepted_lines, f"gateway {process.log_path.name} accepted nothing"

    # Both replicas of tenant and personnel served requests before one of
    # them was killed, and the survivor kept serving after it.
    for service, replies in report.stats_before_kill.items():
        counts = {reply["id"]: requests_served(reply) for reply in replies}
        print(f"  {service} requests per instance before the kill: {counts}")
        assert len(counts) == 2, f"{service}: {len(counts)} instances replied"
        assert all(count > 0 for count in counts.values()), counts
    for service in ("tenant", "personnel"):
        survivors = await service_stats(
            nats_cluster.urls, f"linkdesk-{service}", expected=1
        )
        assert len(survivors) == 1, f"{service}: {len(survivors)} instances replied"
        before = {
            reply["id"]: requests_served(reply)
            for reply in report.stats_before_kill[service]
        }
        survivor = survivors[0]
        print(
            f"  {service} survivor {survivor['id']}: "
            f"{requests_served(survivor)} requests in total"
        )
        assert requests_served(survivor) > before[survivor["id"]]

    # Both ticket replicas stored tickets.
    ticket_counts = {
        process.log_path.name: sum(
            record["count"] for record in log_events(process.log_path, "tickets_stored")
        )
        for process in stack.instances("ticket")
    }
    print(f"  tickets stored per ticket process: {ticket_counts}")
    assert all(count > 0 for count in ticket_counts.values()), ticket_counts
    assert sum(ticket_counts.values()) <= sum(stored.values())

    # The killed processes stayed dead, and the others still run.
    for name in SERVICES:
        first, replica = stack.instances(name)
        assert first.running, f"{name} stopped"
        assert not replica.running, f"{name} replica was not killed"

    # All three NATS servers still run, the restarted one included.
    for node in nats_cluster.nodes:
        assert node.running, f"nats server {node.server_name} stopped"
    await asyncio.to_thread(nats_cluster.wait_healthy, 30.0)
