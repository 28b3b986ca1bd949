"""Errors the framework answers itself: the body of every error, the handlers, and the spec's error responses."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from plugkit.spec import iter_operations

INTERNAL_ERROR = "internal error; the server log has the cause"


def json_messages(status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    """The two ASGI messages of a JSON response."""
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    }
    return start, {"type": "http.response.body", "body": body}


log = logging.getLogger("plugkit")


class ErrorDetail(BaseModel):
    """The body of every error response."""

    detail: str


ERROR_SCHEMA = {
    "title": "ErrorDetail",
    "type": "object",
    "properties": {"detail": {"type": "string", "title": "Detail"}},
    "required": ["detail"],
}
COMMON_ERRORS = {
    "400": "The response would be over the size the model host accepts; ask for less",
    "413": "The request body is over the size limit",
}
AUTH_ERRORS = {"401": "Missing, malformed or wrong credential", "403": "The credential does not reach this resource"}


def with_error_responses(spec: dict[str, Any], operations: frozenset[str], *, authenticated: bool) -> dict[str, Any]:
    """Document the errors the framework itself answers on every API operation (size limits, auth)."""
    spec = copy.deepcopy(spec)
    spec.setdefault("components", {}).setdefault("schemas", {}).setdefault("ErrorDetail", ERROR_SCHEMA)
    errors = {**COMMON_ERRORS, **(AUTH_ERRORS if authenticated else {})}
    for _path, _method, operation in iter_operations(spec):
        if operation.get("operationId") not in operations:
            continue
        responses = operation.setdefault("responses", {})
        for status, description in errors.items():
            responses.setdefault(
                status,
                {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}},
                },
            )
    return spec


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = body_parse_detail(exc.__cause__) if exc.status_code == 400 and exc.__cause__ else exc.detail
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": _validation_message(e), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)


def body_parse_detail(cause: BaseException) -> str:
    """Say why a request body could not be parsed (FastAPI only says that it could not)."""
    if isinstance(cause, RecursionError):
        return "the JSON body is nested too deeply to parse"
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8: byte 0x{cause.object[cause.start]:02x} at position {cause.start}"
    return f"the body could not be parsed: {type(cause).__name__}"


def _validation_message(error: Any) -> str:
    message = str(error.get("msg", ""))
    reason = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid" and isinstance(reason, str):
        return f"the body is not valid JSON: {reason}"
    return message


def json_error(status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    return json_messages(status, json.dumps({"detail": detail}).encode(), headers)
