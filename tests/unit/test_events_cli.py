"""Pure parts of `linkdesk events tail` and of the ticket consumer's declaration."""

from __future__ import annotations

import datetime as dt

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from linkdesk.api_client import CommandError
from linkdesk.events import _print_event, parse_since, tail_subject
from services.ticket import durable

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - dt.timedelta(seconds=30)),
        ("15m", NOW - dt.timedelta(minutes=15)),
        ("2h", NOW - dt.timedelta(hours=2)),
        ("7d", NOW - dt.timedelta(days=7)),
        ("2026-02-01T08:00:00+01:00", dt.datetime(2026, 2, 1, 7, 0, tzinfo=dt.UTC)),
    ],
)
def test_parse_since(text: str, expected: dt.datetime) -> None:
    assert parse_since(text, now=NOW) == expected


def test_parse_since_naive_is_local_time() -> None:
    parsed = parse_since("2026-02-01T08:00:00")

    assert parsed.tzinfo is not None
    assert parsed.replace(tzinfo=None) == dt.datetime(2026, 2, 1, 8, 0)


@pytest.mark.parametrize("text", ["yesterday", "15 minutes", "-5m", "10w"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(CommandError, match=f"invalid --since '{text}'"):
        parse_since(text, now=NOW)


@pytest.mark.parametrize(
    ("tenant", "kind", "subject"),
    [
        (None, None, "tickets.v1.>"),
        ("t1", None, "tickets.v1.t1.>"),
        ("t1", "created", "tickets.v1.t1.created"),
        (None, "status_changed", "tickets.v1.*.status_changed"),
    ],
)
def test_tail_subject(tenant: str | None, kind: str | None, subject: str) -> None:
    assert tail_subject(tenant, kind) == subject


def server_view(**changes: object) -> ConsumerConfig:
    """The consumer as the server reports it, with the server's defaults."""
    config = ConsumerConfig(
        name="ticket-store",
        durable_name="ticket-store",
        description="ticket service: store submissions in PostgreSQL",
        filter_subject="tickets.v1.*.submitted",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=1000,
        max_waiting=512,
        num_replicas=0,
    )
    return config.evolve(**changes)


def test_consumer_without_differences() -> None:
    assert durable.differences(durable.consumer_config(), server_view()) == ([], [])


def test_consumer_single_filter_list_equals_filter() -> None:
    actual = server_view(
        filter_subject=None, filter_subjects=["tickets.v1.*.submitted"]
    )

    assert durable.differences(durable.consumer_config(), actual) == ([], [])


def test_consumer_differences_split_by_kind() -> None:
    actual = server_view(
        ack_wait=60.0,
        max_deliver=5,
        filter_subject="tickets.v1.>",
        deliver_policy=DeliverPolicy.NEW,
    )

    updated, fixed = durable.differences(durable.consumer_config(), actual)

    assert [d.setting for d in updated] == ["ack_wait", "max_deliver"]
    assert [d.setting for d in fixed] == ["filter_subject", "deliver_policy"]
    assert str(updated[0]) == "ack_wait is 60.0, expected 30.0"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"subject": "J\\ud800rg"}', "the string at $.subject contains \\ud800"),
        (b'{"later": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "nests"),
    ],
    ids=["lone-surrogate", "deep-nesting"],
)
def test_undecodable_event_is_explained_and_skipped(
    capsys: pytest.CaptureFixture[str], data: bytes, expected: str
) -> None:
    _print_event("tickets.v1.t.created", data, 7)

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "skipped undecodable message 7 on tickets.v1.t.created" in captured.err
    assert expected in captured.err
    assert "truncated" not in captured.err
