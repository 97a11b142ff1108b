"""The example NATS configuration limits a subscriber to one tenant's events."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from shared import streams, subjects
from shared.embedded import LOOPBACK, free_port, nats_server_binary

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "deploy" / "nats" / "tenant-subscriber.conf"
)
EXAMPLE_TENANT = "00000000-0000-4000-8000-00000000a11e"
SUBSCRIBER = "acme-erp"
TENANT_A = str(uuid.uuid4())
TENANT_B = str(uuid.uuid4())


@dataclass
class SecuredNats:
    port: int
    services_password: str
    subscriber_password: str

    def url(self, user: str, password: str) -> str:
        return f"nats://{user}:{password}@{LOOPBACK}:{self.port}"


def render_example(store_dir: Path, port: int, monitor_port: int) -> str:
    """Return the example configuration for tenant A on free loopback ports."""
    text = EXAMPLE.read_text(encoding="utf-8")
    replacements = {
        "listen: 127.0.0.1:4222": f"listen: {LOOPBACK}:{port}",
        "http: 127.0.0.1:8222": f"http: {LOOPBACK}:{monitor_port}",
        '"/var/lib/nats/jetstream"': f'"{store_dir}"',
        EXAMPLE_TENANT: TENANT_A,
    }
    for old, new in replacements.items():
        assert old in text, f"the example no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def _wait_healthy(process: subprocess.Popen[bytes], monitor_port: int) -> None:
    url = f"http://{LOOPBACK}:{monitor_port}/healthz?js-enabled-only=true"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "nats-server exited at start"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    pytest.fail("nats-server with the example configuration not healthy in 20 s")


@pytest.fixture(scope="module")
def secured_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    folder = tmp_path_factory.mktemp("secured-nats")
    port, monitor_port = free_port(), free_port()
    config = folder / "nats.conf"
    config.write_text(render_example(folder / "jetstream", port, monitor_port))
    # The example's rule: a password starts with a letter.
    server = SecuredNats(
        port, "p" + secrets.token_urlsafe(16), "p" + secrets.token_urlsafe(16)
    )
    env = {
        "LINKDESK_NATS_SERVICES_PASSWORD": server.services_password,
        "LINKDESK_NATS_SUBSCRIBER_PASSWORD": server.subscriber_password,
    }
    check = subprocess.run(
        [str(nats_server_binary()), "-c", str(config), "-t"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    with (folder / "nats-server.log").open("wb") as log:
        process = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(process, monitor_port)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
async def services(secured_nats: SecuredNats) -> AsyncIterator[Client]:
    """The services' user, with the stream and one event per tenant and kind."""
    nc = await nats.connect(
        secured_nats.url("linkdesk", secured_nats.services_password)
    )
    js = nc.jetstream()
    await streams.ensure_ticket_stream(js)
    yield nc
    await nc.close()


class Subscriber:
    """The tenant-A subscriber's connection and the errors the server sent it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, server: SecuredNats) -> Client:
        async def record(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        self.nc = await nats.connect(
            server.url(SUBSCRIBER, server.subscriber_password),
            inbox_prefix=f"_INBOX_{SUBSCRIBER}",
            error_cb=record,
            allow_reconnect=False,
        )
        return self.nc

    async def wait_for_error(self, fragment: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for error in self.errors:
                if fragment.lower() in error:
                    return error
            await asyncio.sleep(0.05)
        pytest.fail(f"no error containing {fragment!r}; errors: {self.errors}")


@pytest.fixture
async def subscriber(secured_nats: SecuredNats) -> AsyncIterator[Subscriber]:
    client = Subscriber()
    await client.connect(secured_nats)
    yield client
    assert client.nc is not None
    await client.nc.close()


async def _publish_events(nc: Client, marker: str) -> None:
    js = nc.jetstream()
    for tenant in (TENANT_B, TENANT_A):
        for kind in ("submitted", "created"):
            await js.publish(
                subjects.ticket_event(tenant, kind),
                f'{{"marker":"{marker}","tenant":"{tenant}"}}'.encode(),
                stream=subjects.TICKET_STREAM,
            )


async def test_subscriber_consumer_reads_only_its_tenant(
    services: Client, subscriber: Subscriber
) -> None:
    """The subscriber's durable consumer delivers tenant A's events only."""
    marker = uuid.uuid4().hex
    await _publish_events(services, marker)
    assert subscriber.nc is not None
    js = subscriber.nc.jetstream(timeout=5)

    pull = await js.pull_subscribe(
        subjects.tenant_ticket_events(TENANT_A),
        durable=SUBSCRIBER,
        stream=subjects.TICKET_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
    )
    received = []
    for _ in range(20):
        info = await pull.consumer_info()
        if info.num_pending == 0:
            break
        for msg in await pull.fetch(info.num_pending, timeout=5):
            received.append(msg)
            await msg.ack_sync()
    ours = [msg for msg in received if marker.encode() in msg.data]

    assert [msg.subject for msg in ours] == [
        subjects.ticket_event(TENANT_A, "submitted"),
        subjects.ticket_event(TENANT_A, "created"),
    ]
    assert all(TENANT_B.encode() not in msg.data for msg in received)
    assert subscriber.errors == []


async def test_subscriber_cannot_create_consumer_for_other_tenant(
    services: Client, subscriber: Subscriber
) -> None:
    """A consumer filtered on tenant B is a publish permissions violation."""
    assert subscriber.nc is not None
    js = subscriber.nc.jetstream(timeout=2)

    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(
            subjects.TICKET_STREAM,
            ConsumerConfig(
                name=SUBSCRIBER,
                durable_name=SUBSCRIBER,
                filter_subject=subjects.tenant_ticket_events(TENANT_B),
            ),
        )

    error = await subscriber.wait_for_error("permissions violation for publish")
    assert f"tickets.v1.{TENANT_B}" in error
    info = await services.jetstream().consumers_info(subjects.TICKET_STREAM)
    filters = {consumer.config.filter_subject for consumer in info}
    assert subjects.tenant_ticket_events(TENANT_B) not in filters


async def test_subscriber_cannot_widen_its_filter(
    services: Client, subscriber: Subscriber
) -> None:
    """The server rejects a body filter that differs from the API subject's."""
    assert subscriber.nc is not None
    allowed = (
        f"$JS.API.CONSUMER.CREATE.{subjects.TICKET_STREAM}.{SUBSCRIBER}."
        f"{subjects.tenant_ticket_events(TENANT_A)}"
    )
    for config in (
        {"filter_subject": subjects.TICKET_EVENTS_WILDCARD},
        {
            "filter_subjects": [
                subjects.tenant_ticket_events(TENANT_A),
                subjects.tenant_ticket_events(TENANT_B),
            ]
        },
    ):
        body = {
            "stream_name": subjects.TICKET_STREAM,
            "config": {
                "name": SUBSCRIBER,
                "durable_name": SUBSCRIBER,
                "ack_policy": "explicit",
                "deliver_policy": "all",
                **config,
            },
        }
        reply = await subscriber.nc.request(
            allowed, json.dumps(body).encode(), timeout=5
        )
        answer = json.loads(reply.data)
        assert "error" in answer, f"{config} was accepted: {answer}"
        assert answer["error"]["code"] == 400


async def test_subscriber_cannot_pull_from_ticket_store(
    services: Client, subscriber: Subscriber
) -> None:
    """Pulling from another consumer, which receives every tenant, is denied."""
    assert subscriber.nc is not None
    await services.jetstream().add_consumer(
        subjects.TICKET_STREAM,
        ConsumerConfig(
            durable_name=subjects.TICKET_STORE_CONSUMER,
            filter_subject=subjects.TICKET_SUBMITTED_WILDCARD,
        ),
    )

    with pytest.raises(nats.errors.TimeoutError):
        await subscriber.nc.request(
            f"$JS.API.CONSUMER.MSG.NEXT.{subjects.TICKET_STREAM}."
            f"{subjects.TICKET_STORE_CONSUMER}",
            b'{"batch":1}',
            timeout=1,
        )

    await subscriber.wait_for_error(
        "permissions violation for publish to "
        f'"$js.api.consumer.msg.next.tickets.{subjects.TICKET_STORE_CONSUMER}"'
    )


async def test_core_subscription_limited_to_tenant(
    services: Client, subscriber: Subscriber
) -> None:
    """Core NATS: A's subject delivers, B's subject is a subscription violation."""
    assert subscriber.nc is not None
    own = await subscriber.nc.subscribe(subjects.tenant_ticket_events(TENANT_A))
    other = await subscriber.nc.subscribe(subjects.tenant_ticket_events(TENANT_B))
    await subscriber.nc.flush()
    error = await subscriber.wait_for_error("permissions violation for subscription")
    assert f"tickets.v1.{TENANT_B}" in error

    # B's event goes out before A's from the same connection, so once A's has
    # arrived, B's would have arrived too if the server delivered it.
    await services.publish(subjects.ticket_event(TENANT_B, "created"), b"b")
    await services.publish(subjects.ticket_event(TENANT_A, "created"), b"a")
    await services.flush()
    message = await own.next_msg(timeout=10)

    assert message.data == b"a"
    assert other.pending_msgs == 0


@pytest.mark.parametrize("password", ["-abc", "12345", "true"])
def test_example_rejects_non_letter_password(tmp_path: Path, password: str) -> None:
    """The example says a password must start with a letter; nats-server reads
    anything else as a number or a switch and rejects the file."""
    config = tmp_path / "nats.conf"
    config.write_text(render_example(tmp_path / "jetstream", 4222, 8222))
    check = subprocess.run(
        [str(nats_server_binary()), "-c", str(config), "-t"],
        env={
            "LINKDESK_NATS_SERVICES_PASSWORD": "pServices",
            "LINKDESK_NATS_SUBSCRIBER_PASSWORD": password,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )

    assert check.returncode != 0
