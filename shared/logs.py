"""Configure the standard library's logging for a service.

Lines are JSON objects when stderr is not a terminal (containers, files) and
key=value pairs on a terminal. Set `LOG_FORMAT` to `json` or `kv` to choose.
Context goes in `extra=`; keys that look like credentials are masked so a
careless call cannot write a secret.

Lines logged while the event loop runs one callback are written together
once it returns, so a request that logs two lines costs one `write` instead
of two (see `StepBufferedHandler`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import sys
from typing import Any, TextIO

import msgspec

_PLAIN_RECORD = logging.LogRecord("", 0, "", 0, "", None, None).__dict__
_STANDARD_ATTRS = frozenset(_PLAIN_RECORD.keys() | {"message", "asctime", "taskName"})
_SET_BY_RECORD = len(_PLAIN_RECORD)
"""How many attributes a LogRecord sets before `extra` and filters add theirs."""
_MASKED_KEYS = frozenset(
    {"secret", "token", "password", "authorization", "query", "query_string"}
)
_DROPPED_KEYS = frozenset({"color_message"})
_encoder = msgspec.json.Encoder()


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def _time(record: logging.LogRecord) -> str:
    """Return the record's time in UTC to the millisecond, such as
    `2026-12-05T09:10:04.247+00:00`; the date and time of the second are
    formatted once per second."""
    global _second
    second = int(record.created)
    # Rounded to the microsecond first, as datetime.fromtimestamp does.
    micros = round((record.created - second) * 1_000_000)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached = _second
    if cached[0] != second:
        text = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached = _second = (second, text)
    return f"{cached[1]}.{micros // 1000:03d}+00:00"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "time": _time(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    # The record's own attributes come first in its __dict__, so only the
    # ones after them need the checks below.
    # NOTE: a filter that deletes and sets again one of the record's own
    # attributes, or a LogRecord subclass that sets a field before its
    # __init__, would shift the fields and lose one. Nothing here does.
    added = itertools.islice(record.__dict__.items(), _SET_BY_RECORD, None)
    for key, value in added:
        if key in _STANDARD_ATTRS or key in _DROPPED_KEYS or key.startswith("_"):
            continue
        fields[key] = "***" if key.lower() in _MASKED_KEYS else value
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return _encoder.encode(_fields(record)).decode()


def _kv_value(value: Any) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' ="\n'):
        return _encoder.encode(text).decode()
    return text


class KeyValueFormatter(logging.Formatter):
    """`time=… level=… message=… key=value` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        error = fields.pop("error", None)
        line = " ".join(f"{key}={_kv_value(value)}" for key, value in fields.items())
        return f"{line}\n{error}" if error else line


class StepBufferedHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes the lines of one event-loop step at once.

    Lines at WARNING and above, lines logged outside a running event loop,
    and `flush()` write at once, after any lines still waiting, so the order
    stays that of the calls. At most the lines of the step that was running
    are lost when the process is killed.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or record.levelno >= logging.WARNING:
            self._waiting.append(line)
            self._write_waiting()
            return
        if not self._waiting:
            loop.call_soon(self.flush)
        self._waiting.append(line)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_waiting()
        finally:
            self.release()

    def _write_waiting(self) -> None:
        lines, self._waiting = self._waiting, []
        if not lines:
            return
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:
            # As in StreamHandler, a broken stream must not break the caller.
            # handleError prints the error to stderr.
            self.handleError(
                logging.makeLogRecord({"msg": f"{len(lines)} log lines lost"})
            )


def flush() -> None:
    """Write the lines that the root logger's handlers have not written yet."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def configure(service: str) -> None:
    """Route every logger to stderr in the format that `LOG_FORMAT` selects."""
    chosen = os.environ.get("LOG_FORMAT", "").lower()
    use_json = chosen == "json" or (chosen != "kv" and not sys.stderr.isatty())
    handler = StepBufferedHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else KeyValueFormatter())
    handler.addFilter(_ServiceFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    # The access log of uvicorn prints the full query string, which carries
    # the link secret; the gateway writes its own access log instead.
    logging.getLogger("uvicorn.access").disabled = True
    # No line prints the caller, thread or process, and finding them took
    # about 2% of the gateway's CPU time for posted forms (py-spy). The
    # logging HOWTO's section on optimization names these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.getLogger("uvicorn.error").propagate = True


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True
