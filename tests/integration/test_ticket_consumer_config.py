"""The ticket service reconciles its durable consumer with the server's at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from linkdesk.processes import ServiceProcess
from services.ticket.durable import consumer_config
from shared import subjects
from shared.embedded import EmbeddedNats, free_port


def ticket_service(
    nats_url: str, database_url: str, log: Path, **env: str
) -> ServiceProcess:
    return ServiceProcess(
        "ticket",
        free_port(),
        {
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            "LOG_FORMAT": "json",
            # No tenant service listens on this server, and no message comes.
            "TICKET_TENANT_CHECK": "off",
            **env,
        },
        log,
    )


async def create_by_hand(nc: Client, **settings: object) -> None:
    # The same description as the service's, so that a start only updates
    # the settings a test changes.
    config = ConsumerConfig(
        durable_name=subjects.TICKET_STORE_CONSUMER,
        description=consumer_config().description,
        filter_subject=subjects.TICKET_SUBMITTED_WILDCARD,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        max_deliver=-1,
    ).evolve(**settings)
    await nc.jetstream().add_consumer(subjects.TICKET_STREAM, config)


async def test_ack_wait_updated_at_start(
    nc: Client, own_nats: EmbeddedNats, own_database: str, tmp_path: Path
) -> None:
    """A consumer with ack_wait 30 s gets the 60 s that the release expects."""
    await create_by_hand(nc, max_deliver=-1, ack_wait=30, max_ack_pending=20)
    service = ticket_service(
        own_nats.url,
        own_database,
        tmp_path / "ticket.log",
        TICKET_ACK_WAIT_SECONDS="60",
    )
    service.start()
    try:
        service.wait_ready()
        info = await nc.jetstream().consumer_info(
            subjects.TICKET_STREAM, subjects.TICKET_STORE_CONSUMER
        )
        consumers = await nc.jetstream().consumers_info(subjects.TICKET_STREAM)
    finally:
        service.stop()

    # The running service fetches from the updated durable consumer, not
    # from an ephemeral one next to it.
    assert [c.name for c in consumers] == [subjects.TICKET_STORE_CONSUMER]
    assert info.config.ack_wait == 60
    assert info.config.max_ack_pending == 1000
    assert info.config.max_deliver == -1
    assert info.config.filter_subject == subjects.TICKET_SUBMITTED_WILDCARD
    log = (tmp_path / "ticket.log").read_text()
    assert "consumer updated" in log
    assert "ack_wait is 30.0, expected 60.0" in log


async def test_max_deliver_limit_removed_at_start(
    nc: Client, own_nats: EmbeddedNats, own_database: str, tmp_path: Path
) -> None:
    """A consumer that would give up after 5 deliveries becomes unlimited."""
    await create_by_hand(nc, max_deliver=5)
    service = ticket_service(own_nats.url, own_database, tmp_path / "ticket.log")
    service.start()
    try:
        service.wait_ready()
        info = await nc.jetstream().consumer_info(
            subjects.TICKET_STREAM, subjects.TICKET_STORE_CONSUMER
        )
    finally:
        service.stop()

    assert info.config.max_deliver == -1
    assert info.config.ack_wait == 30
    log = (tmp_path / "ticket.log").read_text()
    assert "max_deliver is 5, expected -1" in log


async def test_headers_only_reset_at_start(
    nc: Client, own_nats: EmbeddedNats, own_database: str, tmp_path: Path
) -> None:
    """A leftover headers-only consumer would deliver submissions without bytes."""
    await create_by_hand(nc, headers_only=True)
    service = ticket_service(own_nats.url, own_database, tmp_path / "ticket.log")
    service.start()
    try:
        service.wait_ready()
        info = await nc.jetstream().consumer_info(
            subjects.TICKET_STREAM, subjects.TICKET_STORE_CONSUMER
        )
    finally:
        service.stop()

    assert not info.config.headers_only
    log = (tmp_path / "ticket.log").read_text()
    assert "headers_only is True, expected False" in log


@pytest.mark.parametrize(
    ("setting", "change"),
    [
        ("filter_subject", {"filter_subject": "tickets.v1.*.created"}),
        ("deliver_policy", {"deliver_policy": DeliverPolicy.NEW}),
    ],
)
async def test_fixed_setting_difference_stops_start(
    nc: Client,
    own_nats: EmbeddedNats,
    own_database: str,
    tmp_path: Path,
    setting: str,
    change: dict[str, object],
) -> None:
    """A difference the service does not change: it exits naming the setting."""
    await create_by_hand(nc, **change)
    before = await nc.jetstream().consumer_info(
        subjects.TICKET_STREAM, subjects.TICKET_STORE_CONSUMER
    )
    service = ticket_service(own_nats.url, own_database, tmp_path / "ticket.log")
    service.start()
    try:
        assert service.process is not None
        exit_code = service.process.wait(60)
    finally:
        service.stop()

    assert exit_code != 0
    log = (tmp_path / "ticket.log").read_text()
    assert "consumer_config_mismatch" in log
    assert f"{setting} is " in log
    assert f"consumer {subjects.TICKET_STORE_CONSUMER} on stream TICKETS differs" in log
    after = await nc.jetstream().consumer_info(
        subjects.TICKET_STREAM, subjects.TICKET_STORE_CONSUMER
    )
    assert after.config.filter_subject == before.config.filter_subject
    assert after.config.deliver_policy == before.config.deliver_policy
    assert after.config.ack_wait == before.config.ack_wait
