"""Rate limits through two gateway replicas that share one key-value bucket.

Two extra gateway processes run with small limits and a bucket of their
own, against the session's NATS and services, so the session's gateway
(with limits too high to reach) is not affected. Client addresses come from
`X-Forwarded-For`, which the gateway trusts from 127.0.0.1 by default, so each
test acts as clients of its own.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import nats
import pytest

from linkdesk.processes import ServiceProcess, Stack
from shared import subjects
from shared.embedded import free_port
from tests.helpers import LINK_PATH, VALID_FIELDS, Admin, TenantFixture, form_token

FAILURES_PER_ADDRESS = 3
FAILURES_PER_SECRET = 4
SUBMISSIONS_PER_PERSON = 2
LIMIT_ENV = {
    "GATEWAY_LINK_FAILURES_PER_ADDRESS": str(FAILURES_PER_ADDRESS),
    "GATEWAY_LINK_FAILURES_PER_SECRET": str(FAILURES_PER_SECRET),
    # Long enough that no test waits for a block to end.
    "GATEWAY_LINK_BACKOFF_BASE_SECONDS": "120",
    "GATEWAY_SUBMISSIONS_PER_PERSON": str(SUBMISSIONS_PER_PERSON),
    "GATEWAY_INVALID_LINK_MIN_SECONDS": "0",
}
MAX_ATTEMPTS = 12
_addresses = itertools.count(1)


def new_address() -> str:
    """Return a documentation address (RFC 5737) no other test uses."""
    number = next(_addresses)
    return f"198.51.{100 + number // 250}.{number % 250 + 1}"


@pytest.fixture(scope="module")
def limited_gateways(stack: Stack, work_dir: Path) -> Iterator[list[ServiceProcess]]:
    """Two gateway replicas with small limits on a bucket of their own."""
    env = {
        **stack.services["gateway"].env,
        **LIMIT_ENV,
        "GATEWAY_STATE_BUCKET": f"limits_test_{uuid.uuid4().hex[:12]}",
    }
    gateways = [
        ServiceProcess(
            "gateway", free_port(), env, work_dir / "logs" / f"gateway-limits-{n}.log"
        )
        for n in (1, 2)
    ]
    try:
        for gateway in gateways:
            gateway.start()
        for gateway in gateways:
            gateway.wait_ready()
        yield gateways
    finally:
        for gateway in gateways:
            gateway.stop()


def get(gateway: ServiceProcess, target: str, address: str) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}{target}",
        headers={"X-Forwarded-For": address},
        timeout=10,
        follow_redirects=False,
    )


def post(
    gateway: ServiceProcess, fields: dict[str, str], address: str
) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/public/tickets",
        data=fields,
        headers={"X-Forwarded-For": address},
        timeout=10,
    )


def link_target(secret: str, number: str) -> str:
    return f"{LINK_PATH}?{quote(secret, safe='')}&{quote(number, safe='')}"


def miss_until_blocked(
    gateways: list[ServiceProcess], target: str, address: str | None = None
) -> tuple[int, httpx.Response]:
    """Send `target` alternately to each gateway until one answers 429."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        gateway = gateways[attempt % len(gateways)]
        answer = get(gateway, target, address or new_address())
        if answer.status_code == 429:
            return attempt, answer
        assert answer.status_code == 404, answer.text[:300]
    pytest.fail(f"no 429 after {MAX_ATTEMPTS} invalid links")


def wait_until_counts_written(gateway: ServiceProcess) -> None:
    """Wait until the gateway wrote its accepted submissions to the bucket.

    Each replica counts in memory and writes the sums in the background, so
    another replica reads them only after that write.
    """
    deadline = time.monotonic() + 10
    pending = None
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        for line in metrics.splitlines():
            if line.startswith("linkdesk_rate_limit_pending_increments "):
                pending = float(line.rsplit(" ", 1)[1])
        if pending == 0:
            return
        time.sleep(0.05)
    pytest.fail(f"{pending} increments still unwritten after 10 s")


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            lines.append(record)
    return lines


def test_misses_from_one_address_blocked(
    limited_gateways: list[ServiceProcess], tenant: TenantFixture, stack: Stack
) -> None:
    address = new_address()
    attempts, blocked = miss_until_blocked(
        limited_gateways, link_target("k7Q2xLm9Rt4vZp1W", "004711"), address
    )
    # The free failures, one claimed attempt, then the block.
    assert attempts == FAILURES_PER_ADDRESS + 2

    assert 1 <= int(blocked.headers["retry-after"]) <= 120
    neutral = httpx.get(f"{stack.url('gateway')}{LINK_PATH}?x", timeout=10)
    assert neutral.status_code == 404
    assert blocked.content == neutral.content
    assert blocked.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in blocked.headers["content-security-policy"]

    # Blocked on both replicas, even for a valid link.
    valid = link_target(tenant.secret, tenant.personnel_number)
    for gateway in limited_gateways:
        assert get(gateway, valid, address).status_code == 429
    # Another address behind the same gateways is not affected.
    assert get(limited_gateways[0], valid, new_address()).status_code == 200


def test_untrusted_proxy_header_ignored(stack: Stack, work_dir: Path) -> None:
    """With FORWARDED_ALLOW_IPS naming another proxy, `X-Forwarded-For` from
    127.0.0.1 is ignored, so misses under ever new addresses count for
    127.0.0.1 and block it."""
    env = {
        **stack.services["gateway"].env,
        **LIMIT_ENV,
        "GATEWAY_STATE_BUCKET": f"limits_test_{uuid.uuid4().hex[:12]}",
        "FORWARDED_ALLOW_IPS": "192.0.2.1",
    }
    gateway = ServiceProcess(
        "gateway", free_port(), env, work_dir / "logs" / "gateway-proxy.log"
    )
    gateway.start()
    try:
        gateway.wait_ready()
        statuses = [
            get(gateway, link_target(uuid.uuid4().hex, "004711"), new_address())
            for _ in range(FAILURES_PER_ADDRESS + 2)
        ]
    finally:
        gateway.stop()

    codes = [answer.status_code for answer in statuses]
    assert codes == [404] * (FAILURES_PER_ADDRESS + 1) + [429]


def test_person_misses_with_one_secret_blocked(
    limited_gateways: list[ServiceProcess], admin: Admin
) -> None:
    leaked = admin.create_tenant_with_person("004711", "Jörg Bäcker")
    other = admin.create_tenant_with_person("004711", "Jörg Bäcker")

    # Every guess from a new address: only the secret's count can stop them.
    numbers = (f"{n:06d}" for n in range(100_000, 100_000 + MAX_ATTEMPTS))
    blocked = None
    for attempt, number in enumerate(numbers, start=1):
        gateway = limited_gateways[attempt % 2]
        answer = get(gateway, link_target(leaked.secret, number), new_address())
        if answer.status_code == 429:
            blocked = attempt
            break
        assert answer.status_code == 404
    assert blocked == FAILURES_PER_SECRET + 2

    valid = link_target(leaked.secret, "004711")
    assert get(limited_gateways[0], valid, new_address()).status_code == 429
    other_valid = link_target(other.secret, "004711")
    assert get(limited_gateways[1], other_valid, new_address()).status_code == 200


def test_limit_logged_once_and_counted(
    limited_gateways: list[ServiceProcess],
) -> None:
    address = new_address()
    gateway = limited_gateways[0]
    target = link_target("unknownSecretForLog", "004711")
    for _ in range(FAILURES_PER_ADDRESS + 1):
        assert get(gateway, target, address).status_code == 404
    for _ in range(3):
        assert get(gateway, target, address).status_code == 429

    deadline = time.monotonic() + 5
    reached: list[dict[str, Any]] = []
    while not reached and time.monotonic() < deadline:
        reached = log_events(gateway.log_path, "rate_limit_reached")
        time.sleep(0.05)
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    keys = [line["key"] for line in reached]
    assert len(keys) == len(set(keys)), "a key was logged twice in one window"
    assert reached, "no rate_limit_reached line in the gateway log"
    assert all(line["limit"].startswith("link_failures") for line in reached)
    assert address not in gateway.log_path.read_text(encoding="utf-8")

    hits = [
        line
        for line in metrics.splitlines()
        if line.startswith('linkdesk_rate_limit_hits_total{limit="link_failures')
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in hits) >= 3


async def test_submissions_per_person_limited(
    limited_gateways: list[ServiceProcess],
    tenant: TenantFixture,
    admin: Admin,
    nats_url: str,
) -> None:
    references = []
    for attempt in range(SUBMISSIONS_PER_PERSON + 1):
        gateway = limited_gateways[attempt % 2]
        address = new_address()
        page = get(gateway, link_target(tenant.secret, "004711"), address)
        assert page.status_code == 200
        answer = post(
            gateway, {"form_token": form_token(page), **VALID_FIELDS}, address
        )
        if attempt < SUBMISSIONS_PER_PERSON:
            assert answer.status_code == 303, answer.text[:300]
            references.append(answer.headers["location"])
            wait_until_counts_written(gateway)
            continue
        assert answer.status_code == 429
        assert int(answer.headers["retry-after"]) >= 1
        assert "Drucker im 2. Stock" in answer.text
        assert form_token(answer)

    assert len(set(references)) == SUBMISSIONS_PER_PERSON
    # The gateway answers 303 only after JetStream stored the event, so the
    # stream already holds everything that was published.
    subject = subjects.ticket_submitted(tenant.id)
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        info = await nc.jetstream(timeout=5).stream_info(
            subjects.TICKET_STREAM, subjects_filter=subject
        )
    finally:
        await nc.close()
    assert (info.state.subjects or {}).get(subject, 0) == SUBMISSIONS_PER_PERSON
