"""Log formats: JSON lines and text, the request id on every line of a request, and the dictConfig servers use."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys

from plugkit import logs


def record_of(logger: str, message: str, **extra: object) -> logging.LogRecord:
    record = logging.getLogger(logger).makeRecord(logger, logging.INFO, __file__, 1, message, (), None, extra=extra)
    logs.RequestIdFilter().filter(record)
    return record


def test_a_json_line_holds_time_level_logger_message_and_a_request_lines_fields() -> None:
    fields = {"method": "GET", "path": "/todos/alice", "status": 200, "request_id": "r-1"}
    line = json.loads(logs.JsonFormatter().format(record_of("plugkit.request", "GET /todos/alice", http=fields)))
    assert line["level"] == "info" and line["logger"] == "plugkit.request" and line["message"] == "GET /todos/alice"
    assert line["method"] == "GET" and line["status"] == 200 and line["request_id"] == "r-1"
    assert line["time"].endswith("Z") and isinstance(line["pid"], int)


def test_a_line_logged_while_handling_a_request_carries_its_id_in_both_formats() -> None:
    token = logs.request_id.set("abc123")
    try:
        record = record_of("plugkit", "store slow")
    finally:
        logs.request_id.reset(token)
    assert json.loads(logs.JsonFormatter().format(record))["request_id"] == "abc123"
    assert logs.TextFormatter().format(record).endswith("store slow [abc123]")
    assert "request_id" not in json.loads(logs.JsonFormatter().format(record_of("plugkit", "outside")))


def test_an_exception_is_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("plugkit").makeRecord(
            "plugkit", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text and "ValueError: boom" in json.loads(text)["exception"]


def test_the_server_config_writes_json_lines_for_plugkit_and_uvicorn_and_turns_off_uvicorns_access_log() -> None:
    config = logs.logging_config("json", "info")
    stream = io.StringIO()
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        logging.getLogger("plugkit.request").info("a request")
        logging.getLogger("uvicorn.error").info("started")
        logging.getLogger("uvicorn.access").info("GET / 200")
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        for name in ("plugkit", "uvicorn", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("plugkit.request", "a request"),
        ("uvicorn.error", "started"),
    ]


def test_a_request_id_from_the_caller_is_kept_only_when_it_is_a_plain_token() -> None:
    assert logs.request_id_from(b"trace-1.a:b_c") == "trace-1.a:b_c"
    made = {logs.request_id_from(None) for _ in range(1000)}
    assert len(made) == 1000
    assert logs.request_id_from(b"x" * 129) not in (b"x" * 129).decode()
    assert logs.request_id_from(b"bad\nid") != "bad\nid"
