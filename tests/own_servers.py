"""A NATS server, PostgreSQL and the four services that belong to one test.

Fault tests stop and restart these servers, and tests that need other
service settings (such as `LOG_LEVEL`) start services of their own, so the
session's servers and services stay as the other tests expect them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from linkdesk.processes import Stack
from services.gateway import form_token
from shared.embedded import EmbeddedNats, EmbeddedPostgres
from tests.helpers import LINK_PATH, Admin, TenantFixture, open_link, post_form
from tests.helpers import form_token as page_form_token


@dataclass
class OwnStack:
    nats: EmbeddedNats
    postgres: EmbeddedPostgres
    """The database server of tenant and personnel, and of ticket unless
    `ticket_postgres` is another one."""
    ticket_postgres: EmbeddedPostgres
    stack: Stack
    admin: Admin

    @property
    def form_key(self) -> bytes:
        key = self.stack.form_key
        return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))


HIGH_RATE_LIMITS = {
    "GATEWAY_LINK_FAILURES_PER_ADDRESS": "1000000",
    "GATEWAY_LINK_FAILURES_PER_SECRET": "1000000",
    "GATEWAY_SUBMISSIONS_PER_PERSON": "1000000",
    "GATEWAY_SUBMISSIONS_PER_TENANT": "1000000",
}
"""Rate limits that these tests never reach: they post dozens of forms for
one person from one address, which the gateway's defaults reject with 429."""


@contextlib.contextmanager
def own_stack(
    folder: Path,
    env: Mapping[str, str] | None = None,
    *,
    separate_ticket_database: bool = False,
) -> Iterator[OwnStack]:
    """Start NATS, PostgreSQL and the four services under `folder`; stop all.

    With `separate_ticket_database`, the ticket service gets a PostgreSQL
    server of its own, so that stopping it leaves tenant and personnel
    working.
    """
    token = secrets.token_urlsafe(32)
    nats_server = EmbeddedNats(folder / "nats")
    postgres = EmbeddedPostgres(folder / "postgres")
    ticket_postgres = (
        EmbeddedPostgres(folder / "ticket-postgres")
        if separate_ticket_database
        else postgres
    )
    with contextlib.ExitStack() as cleanup:
        nats_server.start()
        cleanup.callback(nats_server.stop)
        postgres.start()
        cleanup.callback(postgres.stop)
        if ticket_postgres is not postgres:
            ticket_postgres.start()
            cleanup.callback(ticket_postgres.stop)

        stack = Stack(
            nats_url=nats_server.url,
            database_url=postgres.url,
            log_dir=folder / "logs",
            admin_tokens=f"tests:{token}",
            form_key=secrets.token_urlsafe(32),
            extra_env={**HIGH_RATE_LIMITS, **(env or {})},
        )
        ticket = stack.services["ticket"]
        ticket.env = {**ticket.env, "DATABASE_URL": ticket_postgres.url}
        cleanup.callback(stack.stop)
        stack.start()
        admin = cleanup.enter_context(Admin(stack, token))
        yield OwnStack(nats_server, postgres, ticket_postgres, stack, admin)


def count_by_submission(database_url: str, tenant_id: str) -> dict[str, int]:
    """Return the number of stored tickets per submission id of a tenant."""

    async def query() -> dict[str, int]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT submission_id::text AS id, count(*) AS n"
                " FROM ticket.tickets WHERE tenant_id = $1::uuid"
                " GROUP BY submission_id",
                tenant_id,
            )
        finally:
            await connection.close()
        return {row["id"]: int(row["n"]) for row in rows}

    return asyncio.run(query())


def wait_until_stored(
    database_url: str, tenant_id: str, submission_ids: set[str], timeout: float
) -> dict[str, int]:
    """Poll until every submission id is stored or `timeout` s passed, and
    return the count per stored submission id."""
    deadline = time.monotonic() + timeout
    stored = count_by_submission(database_url, tenant_id)
    while not submission_ids <= stored.keys() and time.monotonic() < deadline:
        time.sleep(0.2)
        stored = count_by_submission(database_url, tenant_id)
    return stored


@dataclass
class Attempt:
    """One pass through the public form: open the link, then post the form."""

    started: float
    """`time.monotonic()` when the link was opened."""
    open_status: int | None
    """None when the gateway sent no HTTP response at all."""
    post_status: int | None = None
    submission_id: str | None = None
    finished: float = 0.0
    """`time.monotonic()` when the pass ended."""

    @property
    def accepted(self) -> bool:
        return self.post_status == 303


@dataclass
class Submitter:
    """Opens a link and posts its form from a thread, again and again.

    The loop ends after `max_attempts` passes, after `max_seconds`, or at
    `stop()`, whichever comes first, so a test can never spin for ever.
    """

    base_url: str
    tenant: TenantFixture
    form_key: bytes
    max_attempts: int
    max_seconds: float
    interval: float
    attempts: list[Attempt] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="submitter")
        self._thread.start()

    def stop(self) -> list[Attempt]:
        """Stop after the current pass and return every pass made."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            assert not self._thread.is_alive(), "the submitter did not stop"
        return list(self.attempts)

    def wait_for(self, count: int, timeout: float) -> None:
        """Wait until `count` passes more than now have finished."""
        target = len(self.attempts) + count
        deadline = time.monotonic() + timeout
        while len(self.attempts) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.attempts) >= target, (
            f"only {len(self.attempts)} of {target} passes within {timeout} s"
        )

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(base_url=self.base_url, timeout=15.0) as gateway:
            while (
                not self._stopping.is_set()
                and len(self.attempts) < self.max_attempts
                and time.monotonic() < deadline
            ):
                attempt = self._attempt(gateway)
                attempt.finished = time.monotonic()
                self.attempts.append(attempt)
                self._stopping.wait(self.interval)

    def _attempt(self, gateway: httpx.Client) -> Attempt:
        started = time.monotonic()
        try:
            page = open_link(gateway, self.tenant.link_query(), LINK_PATH)
        except httpx.HTTPError:
            return Attempt(started, None)
        attempt = Attempt(started, page.status_code)
        if page.status_code != 200:
            return attempt
        token = page_form_token(page)
        attempt.submission_id = form_token.verify(self.form_key, token).submission_id
        try:
            attempt.post_status = post_form(gateway, token).status_code
        except httpx.HTTPError:
            attempt.post_status = None
        return attempt


def wait_for_readiness(url: str, status: int, timeout: float) -> httpx.Response:
    """Poll `url/health/ready` until it returns `status`; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{url}/health/ready", timeout=2.0)
        except httpx.HTTPError:
            last = None
        if last is not None and last.status_code == status:
            return last
        time.sleep(0.1)
    detail = f"{last.status_code} {last.text}" if last is not None else "no answer"
    pytest.fail(
        f"{url}/health/ready did not answer {status} within {timeout} s: {detail}"
    )
