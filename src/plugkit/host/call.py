"""Call one operation of a plugin as a host does: arguments mapped onto the request, the credential, the limits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from plugkit.host.tools import Operation

CALL_TIMEOUT_S = 45.0  # the original host's limit per call
MAX_RESPONSE_CHARS = 100_000  # a longer body was rejected by the host


@dataclass
class CallResult:
    status: int
    text: str
    data: Any  # the parsed JSON body, or None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def too_long(self) -> bool:
        return len(self.text) > MAX_RESPONSE_CHARS


def find_operation(ops: list[Operation], operation_id: str) -> Operation:
    """The operation named `operation_id`; ValueError listing the known ones otherwise."""
    for op in ops:
        if op.operation_id == operation_id:
            return op
    known = ", ".join(op.operation_id for op in ops) or "none"
    raise ValueError(f"no operation {operation_id!r}; the plugin has: {known}")


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_query_value(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def build_request(
    client: httpx.AsyncClient,
    op: Operation,
    server_url: str,
    arguments: Mapping[str, Any],
    *,
    authorization: str | None = None,
) -> httpx.Request:
    """The HTTP request for a tool call; raises ValueError on missing or unknown arguments."""
    path_args, query, headers, body = op.split_arguments(arguments)
    path = op.path
    for name, value in path_args.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    if authorization:
        headers["Authorization"] = authorization
    params = {k: _query_value(v) for k, v in query.items() if v is not None}
    kwargs: dict[str, Any] = {"params": params, "headers": headers}
    if body is not None:
        kwargs["json"] = body
    return client.build_request(op.method.upper(), server_url.rstrip("/") + path, timeout=CALL_TIMEOUT_S, **kwargs)


async def call_operation(
    client: httpx.AsyncClient,
    op: Operation,
    server_url: str,
    arguments: Mapping[str, Any],
    *,
    authorization: str | None = None,
) -> CallResult:
    """Make the call; HTTP errors are results (status and body), transport failures raise httpx errors."""
    response = await client.send(build_request(client, op, server_url, arguments, authorization=authorization))
    text = response.text
    try:
        data = response.json() if text else None
    except ValueError:
        data = None
    return CallResult(response.status_code, text, data)
