"""The durable consumer `ticket-store`: declared here, reconciled at start.

A consumer left on the server by an earlier release may differ from what this
release declares. Settings that only tune delivery are updated in place.
Settings that decide which messages the consumer delivers, and from where,
are never changed by the service: it refuses to start and names the setting,
so an operator decides what happens to the consumer's delivery position.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from shared import subjects
from shared.settings import env_float, env_int

logger = logging.getLogger(__name__)

UPDATED_SETTINGS = (
    "description",
    "ack_wait",
    "max_deliver",
    "max_ack_pending",
    "headers_only",
    "inactive_threshold",
    "sample_freq",
)
"""Settings that the service updates on an existing consumer to its declaration.

`headers_only` would deliver submissions without their bytes and
`inactive_threshold` would let the server delete the durable consumer while
the service is stopped, so both are reset to the declaration."""

FIXED_SETTINGS = (
    "filter_subject",
    "deliver_policy",
    "opt_start_seq",
    "opt_start_time",
    "ack_policy",
    "replay_policy",
    "deliver_subject",
    "deliver_group",
    "backoff",
    "mem_storage",
    "max_waiting",
)
"""Settings that the service refuses to change on an existing consumer.

Changing the filter or the start of delivery on a consumer with a delivery
position could skip or repeat messages. nats-server 2.15 accepts a new filter
on an existing durable consumer, so the service checks this itself. A push consumer
(`deliver_subject`) or a backoff list would change how the service fetches
and when JetStream redelivers, which the parking design depends on.
"""


DEFAULT_MAX_WAITING = 512
"""Pull requests that may wait on the consumer at once (nats-server's default)."""


def consumer_config() -> ConsumerConfig:
    """Build the configuration of the durable consumer that this release expects.

    `max_deliver` is unlimited on purpose: parking is decided by the service,
    so that a database outage of any length never makes JetStream give up on a
    message. `TICKET_ACK_WAIT_SECONDS` (default 30) and
    `TICKET_MAX_ACK_PENDING` (default 1000) tune it.
    """
    return ConsumerConfig(
        name=subjects.TICKET_STORE_CONSUMER,
        durable_name=subjects.TICKET_STORE_CONSUMER,
        description="ticket service: store submissions in PostgreSQL",
        filter_subject=subjects.TICKET_SUBMITTED_WILDCARD,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=env_float("TICKET_ACK_WAIT_SECONDS", 30.0, minimum=1.0),
        max_deliver=-1,
        max_ack_pending=env_int("TICKET_MAX_ACK_PENDING", 1000, minimum=1),
        # The server's default, stated so that a different value is noticed.
        max_waiting=DEFAULT_MAX_WAITING,
    )


@dataclass(frozen=True)
class Difference:
    setting: str
    actual: Any
    expected: Any

    def __str__(self) -> str:
        return f"{self.setting} is {self.actual!r}, expected {self.expected!r}"


class ConsumerMismatch(RuntimeError):
    """The server's consumer differs in a setting that the service never changes."""

    def __init__(self, stream: str, consumer: str, differences: list[Difference]):
        self.differences = differences
        listed = "; ".join(str(difference) for difference in differences)
        super().__init__(
            f"consumer {consumer} on stream {stream} differs from this release: "
            f"{listed}. The service does not change these settings because that "
            "could skip or repeat messages. Check the consumer's pending messages "
            f"(`nats consumer info {stream} {consumer}`), then delete it "
            f"(`nats consumer rm {stream} {consumer}`) so that the service "
            "creates it again, or run the release that created it."
        )


def _normalised(config: ConsumerConfig, setting: str) -> Any:
    value = getattr(config, setting)
    if setting == "filter_subject":
        # A consumer created with a one-element `filter_subjects` list filters
        # exactly like one with `filter_subject`.
        filters = config.filter_subjects or ([value] if value else [])
        return sorted(filters)
    if setting in ("deliver_policy", "ack_policy", "replay_policy") and value:
        return getattr(value, "value", value)
    if setting in ("description", "deliver_subject", "deliver_group", "sample_freq"):
        return value or None
    if setting in ("headers_only", "mem_storage"):
        return bool(value)
    if setting == "inactive_threshold":
        return value or None
    if setting == "backoff":
        return list(value or [])
    if setting == "ack_wait" and value is not None:
        # The server stores nanoseconds; compare in milliseconds.
        return round(float(value) * 1000) / 1000
    if setting == "max_deliver" and (value is None or value <= 0):
        return -1
    return value


def differences(
    expected: ConsumerConfig, actual: ConsumerConfig
) -> tuple[list[Difference], list[Difference]]:
    """Return the differences in updated settings and in fixed settings."""
    updated: list[Difference] = []
    fixed: list[Difference] = []
    for settings, found in ((UPDATED_SETTINGS, updated), (FIXED_SETTINGS, fixed)):
        for setting in settings:
            want = _normalised(expected, setting)
            have = _normalised(actual, setting)
            if setting == "ack_wait" and want is not None and have is not None:
                same = math.isclose(want, have, abs_tol=0.001)
            else:
                same = want == have
            if not same:
                found.append(Difference(setting, have, want))
    return updated, fixed


async def ensure_consumer(
    js: JetStreamContext, stream: str, expected: ConsumerConfig
) -> ConsumerInfo:
    """Create the durable consumer, or bring an existing one to `expected`.

    Raises ConsumerMismatch, after logging each difference, when the existing
    consumer differs in a setting of FIXED_SETTINGS.
    """
    name = expected.durable_name
    assert name is not None
    try:
        info: ConsumerInfo = await js.consumer_info(stream, name)
    except NotFoundError:
        info = await js.add_consumer(stream, expected)
        logger.info(
            "consumer created",
            extra={"event": "consumer_created", "stream": stream, "consumer": name},
        )
        return info

    updated, fixed = differences(expected, info.config)
    if fixed:
        for difference in fixed:
            logger.error(
                "consumer setting differs and cannot be updated: %s",
                difference,
                extra={
                    "event": "consumer_config_mismatch",
                    "stream": stream,
                    "consumer": name,
                    "setting": difference.setting,
                    "actual": repr(difference.actual),
                    "expected": repr(difference.expected),
                },
            )
        raise ConsumerMismatch(stream, name, fixed)
    if not updated:
        return info

    try:
        info = await js.add_consumer(stream, expected)
    except APIError as exc:
        for difference in updated:
            logger.error(
                "consumer setting differs and the server rejected the update: %s",
                difference,
                extra={
                    "event": "consumer_config_mismatch",
                    "stream": stream,
                    "consumer": name,
                    "setting": difference.setting,
                    "error": str(exc),
                },
            )
        raise ConsumerMismatch(stream, name, updated) from exc
    remaining, _ = differences(expected, info.config)
    if remaining:
        # The server accepted the update but kept other values.
        listed = "; ".join(str(difference) for difference in remaining)
        msg = f"consumer {name} on stream {stream} was not updated: {listed}"
        raise RuntimeError(msg)
    logger.info(
        "consumer updated: %s",
        "; ".join(str(difference) for difference in updated),
        extra={
            "event": "consumer_updated",
            "stream": stream,
            "consumer": name,
            "settings": ",".join(difference.setting for difference in updated),
        },
    )
    return info
