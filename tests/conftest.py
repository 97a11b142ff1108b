"""Fixtures shared by the whole suite: real servers and the running services."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from linkdesk.processes import SERVICES, Stack
from tests import backends
from tests.helpers import Admin, TenantFixture

ADMIN_TOKEN = secrets.token_urlsafe(32)


def pytest_report_header() -> str:
    return backends.describe()


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("linkdesk")


@pytest.fixture(scope="session")
def nats_url(work_dir: Path) -> Iterator[str]:
    with backends.nats_server(work_dir) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(work_dir: Path) -> Iterator[str]:
    with backends.postgres_server(work_dir) as url:
        yield url


@pytest.fixture(scope="session")
def stack(nats_url: str, database_url: str, work_dir: Path) -> Iterator[Stack]:
    """The four services as processes, started once for the session."""
    services = Stack(
        nats_url=nats_url,
        database_url=database_url,
        log_dir=work_dir / "logs",
        admin_tokens=f"tests:{ADMIN_TOKEN}",
        form_key=secrets.token_urlsafe(32),
        # Short waits keep the outage tests quick; the contract is "bounded".
        extra_env={
            "NATS_REQUEST_TIMEOUT": "1.0",
            # Every test sends from 127.0.0.1 and many send invalid links on
            # purpose. The limits stay on, so each link pays for their
            # checks, but only the rate-limit tests' own gateways reach them.
            "GATEWAY_LINK_FAILURES_PER_ADDRESS": "1000000",
            "GATEWAY_LINK_FAILURES_PER_SECRET": "1000000",
        },
    )
    try:
        services.start()
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="session")
def form_key(stack: Stack) -> bytes:
    """The session gateway's `GATEWAY_FORM_KEY`, decoded, for tests that sign
    form tokens the gateway did not render, such as already expired ones."""
    key = stack.form_key
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))


@pytest.fixture
def running_stack(stack: Stack) -> Iterator[Stack]:
    """The session's services; any a test stopped are started again after it."""
    yield stack
    stopped = [name for name in SERVICES if not stack.services[name].running]
    if stopped:
        stack.start(*stopped)


@pytest.fixture(scope="session")
def admin(stack: Stack) -> Iterator[Admin]:
    with Admin(stack, ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def tenant(admin: Admin) -> TenantFixture:
    """A new tenant with intake on, one secret and the person `004711`."""
    return admin.create_tenant_with_person("004711", "Jörg Bäcker")


@pytest.fixture
def gateway(stack: Stack) -> Iterator[httpx.Client]:
    """A client of the public gateway that does not follow redirects."""
    with httpx.Client(base_url=stack.url("gateway"), follow_redirects=False) as client:
        yield client
