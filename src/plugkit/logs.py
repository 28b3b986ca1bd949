"""Logs: one line per request (written by plugkit.observe), as text or JSON (`PLUGKIT_LOG_FORMAT=json|text`), every
line of a request tagged with its request id.

What a request line holds is fixed (method, path without its query string, route, operationId, status, duration,
client address, request id): no header, body or query string, so no credential, token or password reaches the log.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import time
import uuid
from typing import Any, Literal

LogFormat = Literal["text", "json"]

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("plugkit_request_id", default=None)
"""The id of the request being handled (None outside one)."""

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


_PROCESS_PREFIX = uuid.uuid4().hex[:12]
_sequence = itertools.count(1)


def request_id_from(header: bytes | None) -> str:
    """The caller's X-Request-ID when it is a plain token of at most 128 characters, else a new one: a random
    prefix drawn once per process and a counter (unique without a system call for randomness per request)."""
    if header is not None and _SAFE_REQUEST_ID.match(header):
        return header.decode("ascii")
    return f"{_PROCESS_PREFIX}{next(_sequence):08x}"


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (`record.request_id`, None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and a request line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            document["request_id"] = rid
        fields = getattr(record, "http", None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: message`, with ` [request_id]` on lines logged while handling a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid and not isinstance(getattr(record, "http", None), dict):  # a request line names its id itself
            line += f" [{rid}]"
        return line


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for a server process (uvicorn applies it in every worker): plugkit's and
    uvicorn's loggers in the chosen format on stderr; uvicorn's access log off (plugkit.observe writes one line per
    request instead)."""
    level = level.upper()
    formatter = "plugkit.logs.JsonFormatter" if log_format == "json" else "plugkit.logs.TextFormatter"
    handler = {"handlers": ["default"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "plugkit.logs.RequestIdFilter"}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "plugkit": handler,
            "uvicorn": handler,
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
