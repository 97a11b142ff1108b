"""The reason for a failed start, read from the service's JSON log."""

from __future__ import annotations

import json
from pathlib import Path

from linkdesk.processes import first_error, last_warning


def write_log(path: Path, *records: object) -> None:
    lines = [
        record if isinstance(record, str) else json.dumps(record) for record in records
    ]
    path.write_text("".join(f"{line}\n" for line in lines))


def write_after_earlier_start(path: Path, level: str, *records: object) -> int:
    """Write a record of an earlier start at `level`, then `records`, and
    return the offset where this start's lines begin."""
    earlier = json.dumps({"level": level, "message": "earlier start"})
    write_log(path, earlier, *records)
    return len(earlier) + 1


def test_first_error_after_the_start(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    start = write_after_earlier_start(
        log,
        "error",
        {"level": "info", "message": "service starting"},
        "not json at all",
        '["a list"]',
        {"level": "warning", "message": "nats disconnected"},
        {"level": "error", "message": "bind failed: address already in use"},
        {"level": "error", "message": "Application startup failed. Exiting."},
    )
    assert first_error(log, start) == "bind failed: address already in use"
    assert first_error(log) == "earlier start"


def test_first_error_traceback_last_line(tmp_path: Path) -> None:
    group = (
        "  + Exception Group Traceback (most recent call last):\n"
        '  |   File "app.py", line 1, in lifespan\n'
        "    | OSError: [Errno 111] Connection refused\n"
        "    +------------------------------------\n"
    )
    log = tmp_path / "service.log"
    write_log(log, {"level": "critical", "message": group})
    assert first_error(log) == "OSError: [Errno 111] Connection refused"


def test_first_error_adds_the_error_field(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    error = "Traceback (most recent call last):\n  ...\nTimeoutError: timed out"
    write_log(log, {"level": "error", "message": "connect failed", "error": error})
    assert first_error(log) == "connect failed (TimeoutError: timed out)"


def test_first_error_empty_without_an_error(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    write_log(log, {"level": "info", "message": "ready"}, {"level": "error"})
    assert first_error(log) == ""
    assert first_error(tmp_path / "missing.log") == ""


def test_last_warning_after_the_start(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    start = write_after_earlier_start(
        log,
        "warning",
        {"level": "warning", "message": "nats error", "error": "refused"},
        {"level": "info", "message": "still trying"},
        {"level": "warning", "message": "nats error", "error": "timed out"},
        {"level": "info", "message": "nothing new"},
    )
    assert last_warning(log, start) == "nats error (timed out)"
    assert last_warning(log, log.stat().st_size) == ""
