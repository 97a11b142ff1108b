"""Tests for the services' log format and the handler that writes it."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from shared.logs import JsonFormatter, KeyValueFormatter, StepBufferedHandler


class RecordingStream(io.StringIO):
    """A text stream that keeps each write separately."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def stream_and_logger() -> Iterator[tuple[RecordingStream, logging.Logger]]:
    stream = RecordingStream()
    handler = StepBufferedHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test_logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield stream, logger
    finally:
        handler.close()
        logger.handlers.clear()


def messages(stream: RecordingStream) -> list[list[str]]:
    """The messages of each write, in order."""
    return [
        [json.loads(line)["message"] for line in text.splitlines()]
        for text in stream.writes
    ]


async def test_one_step_one_write(
    stream_and_logger: tuple[RecordingStream, logging.Logger],
) -> None:
    stream, logger = stream_and_logger
    logger.info("form opened")
    logger.info("GET 200")
    assert stream.writes == []
    await asyncio.sleep(0)
    logger.info("next step")
    await asyncio.sleep(0)
    assert messages(stream) == [["form opened", "GET 200"], ["next step"]]


async def test_warning_writes_at_once(
    stream_and_logger: tuple[RecordingStream, logging.Logger],
) -> None:
    stream, logger = stream_and_logger
    logger.info("accepted")
    logger.warning("publish failed")
    assert messages(stream) == [["accepted", "publish failed"]]
    await asyncio.sleep(0)
    assert len(stream.writes) == 1


async def test_flush_writes_waiting_lines(
    stream_and_logger: tuple[RecordingStream, logging.Logger],
) -> None:
    stream, logger = stream_and_logger
    logger.info("service stopped")
    logger.handlers[0].flush()
    assert messages(stream) == [["service stopped"]]


def test_no_loop_writes_at_once(
    stream_and_logger: tuple[RecordingStream, logging.Logger],
) -> None:
    stream, logger = stream_and_logger
    logger.info("service starting")
    logger.debug("settings read")
    assert messages(stream) == [["service starting"], ["settings read"]]


async def test_thread_line_keeps_order(
    stream_and_logger: tuple[RecordingStream, logging.Logger],
) -> None:
    stream, logger = stream_and_logger
    logger.info("from the loop")
    thread = threading.Thread(target=logger.info, args=("from a thread",))
    thread.start()
    thread.join(5)
    await asyncio.sleep(0)
    assert messages(stream) == [["from the loop", "from a thread"]]


async def test_exception_stays_with_line(
    stream_and_logger: tuple[RecordingStream, logging.Logger],
) -> None:
    stream, logger = stream_and_logger
    try:
        raise ValueError("bad value")
    except ValueError:
        logger.exception("unexpected error")
    (text,) = stream.writes
    record = json.loads(text)
    assert record["message"] == "unexpected error"
    assert "ValueError: bad value" in record["error"]


def test_credential_keys_masked() -> None:
    record = logging.makeLogRecord(
        {"msg": "link opened", "secret": "s3cr3t", "query": "k=s3cr3t", "event": "x"}
    )
    for formatter in (JsonFormatter(), KeyValueFormatter()):
        line = formatter.format(record)
        assert "s3cr3t" not in line
        assert "event" in line


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (1796461845.012, "2026-12-05T09:10:45.012+00:00"),
        (1796461846.5, "2026-12-05T09:10:46.500+00:00"),
        (1798761599.999, "2026-12-31T23:59:59.999+00:00"),
        (1796461845.0, "2026-12-05T09:10:45.000+00:00"),
        (1796461845.9999996, "2026-12-05T09:10:46.000+00:00"),
    ],
)
def test_time_in_utc_to_the_millisecond(created: float, expected: str) -> None:
    record = logging.makeLogRecord({"msg": "x", "created": created})

    assert json.loads(JsonFormatter().format(record))["time"] == expected
    assert expected == dt.datetime.fromtimestamp(created, dt.UTC).isoformat(
        timespec="milliseconds"
    )


def test_extra_fields_keep_their_order() -> None:
    record = logging.getLogger("order").makeRecord(
        "order", logging.INFO, "", 0, "m", None, None, extra={"b": 1, "a": 2}
    )
    record.service = "gateway"

    keys = list(json.loads(JsonFormatter().format(record)))

    assert keys == ["time", "level", "logger", "message", "b", "a", "service"]
