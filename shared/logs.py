"""Configure the standard library's logging for a service.

Lines are JSON objects when stderr is not a terminal (containers, files) and
key=value pairs on a terminal. Set `LOG_FORMAT` to `json` or `kv` to choose.
Context goes in `extra=`; keys that look like credentials are masked so a
careless call cannot write a secret.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from typing import Any

import msgspec

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
_MASKED_KEYS = frozenset(
    {"secret", "token", "password", "authorization", "query", "query_string"}
)
_DROPPED_KEYS = frozenset({"color_message"})
_encoder = msgspec.json.Encoder()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    for key, value in record.__dict__.items():
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


def configure(service: str) -> None:
    """Route every logger to stderr in the format that `LOG_FORMAT` selects."""
    chosen = os.environ.get("LOG_FORMAT", "").lower()
    use_json = chosen == "json" or (chosen != "kv" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else KeyValueFormatter())
    handler.addFilter(_ServiceFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    # The access log of uvicorn prints the full query string, which carries
    # the link secret; the gateway writes its own access log instead.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").propagate = True


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True
