"""A form under the gateway's body limit whose event exceeds NATS max_payload.

The session's nats-server accepts 1 MB per message and the form fields are
far smaller, so this test runs a nats-server of its own with a small
`max_payload` and the four services on it.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import nats
import pytest
from nats.js.errors import NotFoundError

from linkdesk.processes import Stack
from shared import subjects
from shared.embedded import LOOPBACK, free_port, nats_server_binary
from tests.helpers import LINK_PATH, VALID_FIELDS, Admin, form_token

MAX_PAYLOAD = 16 * 1024
"""max_payload of this test's nats-server, in bytes."""

LARGE_DESCRIPTION = "\N{GRINNING FACE}" * 5000
"""5,000 characters, within the description's limit of 10,000. They are
20,000 bytes in the event's UTF-8 JSON, over MAX_PAYLOAD, and about 60 kB
percent-encoded, under the gateway's body limit of 256 kB."""


@pytest.fixture
def small_payload_nats(tmp_path: Path) -> Iterator[str]:
    """Start a nats-server with JetStream and MAX_PAYLOAD, and yield its URL."""
    port = free_port()
    store = tmp_path / "nats" / "jetstream"
    store.mkdir(parents=True)
    config = tmp_path / "nats" / "nats.conf"
    config.write_text(
        f"host: {LOOPBACK}\n"
        f"port: {port}\n"
        f"max_payload: {MAX_PAYLOAD}\n"
        f'jetstream {{ store_dir: "{store}" }}\n'
    )
    log = (tmp_path / "nats" / "nats-server.log").open("wb")
    process = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "nats-server exited; see its log"
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not listen"
                time.sleep(0.1)
        yield f"nats://{LOOPBACK}:{port}"
    finally:
        process.terminate()
        process.wait(20)
        log.close()


@pytest.fixture
def small_payload_stack(
    small_payload_nats: str, own_database: str, tmp_path: Path
) -> Iterator[tuple[Stack, Admin]]:
    token = secrets.token_urlsafe(32)
    stack = Stack(
        nats_url=small_payload_nats,
        database_url=own_database,
        log_dir=tmp_path / "logs",
        admin_tokens=f"tests:{token}",
        form_key=secrets.token_urlsafe(32),
        extra_env={"LOG_FORMAT": "json"},
    )
    try:
        stack.start()
        with Admin(stack, token) as admin:
            yield stack, admin
    finally:
        stack.stop()


async def test_event_over_max_payload_gets_413(
    small_payload_stack: tuple[Stack, Admin], small_payload_nats: str
) -> None:
    stack, admin = small_payload_stack
    tenant = admin.create_tenant_with_person("004711", "Jörg Bäcker")
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=30.0
    ) as gateway:
        page = await gateway.get(f"{LINK_PATH}?{tenant.link_query()}")
        assert page.status_code == 200, page.text[:500]
        fields = {**VALID_FIELDS, "description": LARGE_DESCRIPTION}
        body = urlencode({"form_token": form_token(page), **fields}).encode()
        assert len(body) < 256 * 1024

        answer = await gateway.post(
            "/public/tickets",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    assert answer.status_code == 413, answer.text[:500]
    assert "Traceback" not in answer.text
    assert "16 KB" in answer.text
    gateway_log = stack.services["gateway"].log_path.read_text()
    assert '"payload_too_large"' in gateway_log

    nc = await nats.connect(small_payload_nats)
    try:
        js = nc.jetstream()
        with pytest.raises(NotFoundError):
            await js.get_last_msg(
                subjects.TICKET_STREAM, subjects.ticket_submitted(tenant.id)
            )
    finally:
        await nc.close()
    assert admin.list_tickets(tenant.id) == []
