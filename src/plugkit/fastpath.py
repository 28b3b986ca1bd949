"""Fast paths: every plugin operation's well-formed requests answered ahead of FastAPI's routing, derived from the
operation's own route.

For each request FastAPI matches the path over every route of the app, walks the route's dependency tree through a
generic solver, builds the response and wraps it all in layers of bookkeeping; for an operation whose own work is a
SQLite statement that machinery is most of the cost. A fast path does the same steps for one route with what the route
already holds: its path pattern, FastAPI's own parameter fields and validators (`request_params_to_args`,
`request_body_to_args`), its dependencies and endpoint, and FastAPI's own `serialize_response`. It is built from the
route, not written by hand, so it cannot drift from it.

Only requests that validate take the fast path; any request with a parameter or body error, another content type or
an unknown shape is handed to FastAPI untouched, so every error message still comes from one place. A route takes a
fast path only when everything it declares can be reproduced this way: path, query and JSON body parameters, the
`Request`, and `async` dependencies of the same kinds (no headers, cookies, security schemes, background tasks,
`yield` dependencies or custom response classes); others always take FastAPI's path. Dependency overrides (tests)
turn the fast paths off while they are set.

The fast paths sit inside every other layer of the app: limits, CORS, rate limit and the credential check apply to
them as to any route. An exception raised by a dependency or an endpoint is answered by the app's own exception
handlers. `PLUGKIT_FAST_PATHS=false` turns them off.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute, serialize_response
from fastapi.security.base import SecurityBase
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel
from starlette.convertors import StringConvertor
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugkit.errors import INTERNAL_ERROR

try:  # FastAPI's own test of a list parameter; without it every parameter is read by request_params_to_args
    from fastapi._compat import field_annotation_is_sequence
except ImportError:  # pragma: no cover - another FastAPI
    field_annotation_is_sequence = None  # type: ignore[assignment]

log = logging.getLogger("plugkit")

FastHandler = Callable[[Request, "re.Match[str]", bytes], Awaitable[Response | None]]
"""(request, path match, body) -> the answer, or None to leave the request to the route."""
ExceptionHandlers = Mapping[Any, Callable[[Request, Exception], Any]]


@dataclass(frozen=True)
class FastPath:
    method: str
    path: re.Pattern[str]  # matched against the whole path
    handler: FastHandler
    reads_body: bool = False


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is plain application/json (a subset of what FastAPI reads as JSON: the rest takes the
    route)."""
    return content_type is not None and content_type.partition(";")[0].strip().lower() == "application/json"


class Declined(Exception):
    """The request is not one a fast path takes: FastAPI answers it."""


def _is_async(call: Any) -> bool:
    method = None if inspect.isroutine(call) or inspect.isclass(call) else type(call).__call__  # a callable instance
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(method)


def reproducible(dependant: Dependant, *, top: bool = True) -> bool:
    """Whether FastAPI's handling of a dependant (and its sub-dependencies) is only what a fast path reproduces."""
    special = (
        dependant.header_params,
        dependant.cookie_params,
        dependant.background_tasks_param_name,
        dependant.response_param_name,
        dependant.websocket_param_name,
        dependant.security_scopes_param_name,
        dependant.http_connection_param_name,
        dependant.body_params and not top,
    )
    call = dependant.call
    if any(special) or call is None or isinstance(call, SecurityBase) or not _is_async(call):
        return False
    return all(reproducible(sub, top=False) for sub in dependant.dependencies)


@dataclass(frozen=True, slots=True)
class _Param:
    """What FastAPI works out about a plain parameter on every request (`request_params_to_args`), worked out once."""

    field: Any  # FastAPI's ModelField: its validator is the one FastAPI runs
    name: str
    alias: str
    loc: tuple[str, str]
    many: bool  # a list parameter, read with getlist
    required: bool
    shared_default: bool = False  # its default cannot be changed in place: handed out as is, not deep-copied
    default: Any = None  # the field's default, read once (FastAPI's field.default works it out on each read)


IMMUTABLE = (type(None), bool, int, float, str, bytes, frozenset)
NO_QUERY = QueryParams()


def _plain_params(fields: Sequence[Any]) -> tuple[_Param, ...] | None:
    """The parameters as _Param, or None when one of them is more than a plain named value (a parameter model, a
    JSON parameter, alias choices): FastAPI's own `request_params_to_args` reads those."""
    if field_annotation_is_sequence is None:
        return None
    plain = []
    for field in fields:
        info = field.field_info
        annotation = info.annotation
        candidates = [annotation, *typing.get_args(annotation)]  # a model, or a model | None
        model = any(inspect.isclass(c) and issubclass(c, BaseModel) for c in candidates)
        json_param = any(type(item).__name__ == "Json" for item in info.metadata)
        if info.validation_alias is not None or json_param or model:
            return None
        alias = getattr(field, "validation_alias", None) or field.alias
        many = bool(field_annotation_is_sequence(annotation))
        factory = info.default_factory is not None  # its value is drawn on each request, never at start-up
        default = None if info.is_required() or factory else field.default
        shared = not factory and (
            isinstance(default, IMMUTABLE)
            or (isinstance(default, tuple) and all(isinstance(v, IMMUTABLE) for v in default))
        )
        plain.append(
            _Param(field, field.name, alias, (info.in_.value, alias), many, info.is_required(), shared, default)
        )
    return tuple(plain)


class _Reader:
    """Reads one dependant's path and query parameters as FastAPI does, with FastAPI's fields and validators;
    raises Declined on any error (FastAPI then answers the request, and its error)."""

    def __init__(self, dependant: Dependant) -> None:
        self.groups = [
            (fields, _plain_params(fields), source)
            for fields, source in ((dependant.path_params, "path"), (dependant.query_params, "query"))
            if fields
        ]
        self.request_name = dependant.request_param_name

    def read(self, path: Mapping[str, str], request: Request) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for fields, plain, source in self.groups:
            if source == "path":
                received: Any = path
            elif plain is not None and not request.scope.get("query_string"):
                received = NO_QUERY  # none to parse
            else:
                received = request.query_params
            if plain is None:
                found, errors = request_params_to_args(fields, received)
                if errors:
                    raise Declined
                values.update(found)
                continue
            for param in plain:
                value = received.getlist(param.alias) if param.many and source == "query" else received.get(param.alias)
                if value is None or (param.many and len(value) == 0):
                    if param.required:
                        raise Declined
                    value = param.default if param.shared_default else deepcopy(param.field.default)
                    if not param.field.field_info.validate_default:
                        values[param.name] = value
                        continue
                value, errors = param.field.validate(value, values, loc=param.loc)
                if errors:
                    raise Declined
                values[param.name] = value
        if self.request_name:
            values[self.request_name] = request
        return values


class RouteFastPath:
    """One route's fast path: its parameters, dependencies, endpoint and response serialisation, as FastAPI does them
    for a request that validates."""

    def __init__(self, route: APIRoute) -> None:
        self.route = route
        self.dependant = route.dependant
        self.embed_body = bool(getattr(route, "_embed_body_fields", False))
        self.status_code = route.status_code
        self.dump_json = route.response_field is not None
        self.readers: dict[int, _Reader] = {}  # per dependant of the tree, built on first use

    async def __call__(self, request: Request, match: re.Match[str], body: bytes) -> Response | None:
        try:
            return await self._answer(request, match.groupdict(), body)
        except Declined:
            return None

    def _plan(self, dependant: Dependant, path: Mapping[str, str], request: Request, plan: list[Any]) -> None:
        """Every dependant of the tree, depth first as FastAPI solves them, with its validated parameters."""
        for sub in dependant.dependencies:
            self._plan(sub, path, request, plan)
        reader = self.readers.get(id(dependant))
        if reader is None:
            reader = self.readers[id(dependant)] = _Reader(dependant)
        plan.append((dependant, reader.read(path, request)))

    async def _answer(self, request: Request, path: Mapping[str, str], body: bytes) -> Response:
        # What routing leaves in the scope for the endpoint and its dependencies to read.
        request.scope.update(route=self.route, endpoint=self.route.endpoint, path_params=dict(path))
        plan: list[tuple[Dependant, dict[str, Any]]] = []
        self._plan(self.dependant, path, request, plan)  # everything validates before anything runs
        endpoint_values = plan[-1][1]
        if self.dependant.body_params:
            if not body or not is_json(request.headers.get("content-type")):
                raise Declined
            try:
                received = json.loads(body)
            except (ValueError, RecursionError) as exc:  # FastAPI names the problem
                raise Declined from exc
            found, errors = await request_body_to_args(self.dependant.body_params, received, self.embed_body)
            if errors:
                raise Declined
            endpoint_values.update(found)
        solved: dict[Any, Any] = {}
        results: dict[int, Any] = {}
        for dependant, values in plan[:-1]:
            for sub in dependant.dependencies:
                if sub.name is not None:
                    values[sub.name] = results[id(sub)]
            key = dependant.call if dependant.use_cache else object()
            if key not in solved:
                assert dependant.call is not None
                solved[key] = await dependant.call(**values)
            results[id(dependant)] = solved[key]
        for sub in self.dependant.dependencies:
            if sub.name is not None:
                endpoint_values[sub.name] = results[id(sub)]
        assert self.dependant.call is not None
        raw = await self.dependant.call(**endpoint_values)
        if isinstance(raw, Response):
            return raw
        route = self.route
        if self.dump_json:
            content = await serialize_response(
                field=route.response_field,
                response_content=raw,
                include=route.response_model_include,
                exclude=route.response_model_exclude,
                by_alias=route.response_model_by_alias,
                exclude_unset=route.response_model_exclude_unset,
                exclude_defaults=route.response_model_exclude_defaults,
                exclude_none=route.response_model_exclude_none,
                dump_json=True,
            )
            response = Response(content, media_type="application/json")
        else:
            response = JSONResponse(jsonable_encoder(raw))
        if self.status_code is not None:
            response.status_code = self.status_code
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
            response.headers["content-length"] = "0"
        return response


def derive(route: APIRoute) -> list[FastPath]:
    """The fast paths of one route (one per method), or none when it declares what a fast path does not reproduce."""
    plain_path = all(isinstance(c, StringConvertor) for c in route.param_convertors.values())
    default_response = isinstance(route.response_class, DefaultPlaceholder)
    body_ok = not route.dependant.body_params or getattr(route, "_embed_body_fields", None) is not None
    if not (plain_path and default_response and body_ok and reproducible(route.dependant)):
        return []
    from plugkit.middleware import takes_json_body  # the one definition of a JSON operation

    if route.dependant.body_params and not takes_json_body(route):
        return []
    handler = RouteFastPath(route)
    return [
        FastPath(method, route.path_regex, handler, reads_body=bool(route.dependant.body_params))
        for method in sorted(route.methods or ())
    ]


def derive_all(routes: Sequence[APIRoute]) -> list[FastPath]:
    """The fast paths of every route that has them, in the routes' order (the order FastAPI matches them in)."""
    return [fast for route in routes for fast in derive(route)]


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole request body, and the messages it came in (to hand them on when the fast path declines)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", messages
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


class FastPaths:
    """ASGI middleware that tries the fast paths before handing a request on to the app.

    A path that matches a route but not its method is left to the app (its 405), as is every request while
    `overrides` (the app's dependency overrides) holds anything. `handlers` are the app's exception handlers."""

    def __init__(
        self,
        app: ASGIApp,
        paths: Sequence[FastPath],
        handlers: ExceptionHandlers | None = None,
        overrides: Mapping[Any, Any] | None = None,
    ) -> None:
        self.app, self.paths = app, tuple(paths)
        self.handlers: ExceptionHandlers = handlers if handlers is not None else {}
        self.overrides: Mapping[Any, Any] = overrides if overrides is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path") and not self.overrides:
            method, path = scope["method"], scope["path"]
            for fast in self.paths:
                if fast.method != method or (match := fast.path.fullmatch(path)) is None:
                    continue
                body, messages = b"", list[Message]()
                if fast.reads_body:
                    body, messages = await _read_body(receive)
                    if messages[-1]["type"] != "http.request":  # the client left: let the app see it
                        await self.app(scope, _replay(messages, receive), send)
                        return
                    receive = _replay(messages, receive)
                if await self._answer(fast, match, body, scope, receive, send):
                    return
                break
        await self.app(scope, receive, send)

    async def _answer(
        self, fast: FastPath, match: re.Match[str], body: bytes, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        request = Request(scope, receive)
        try:
            answer = await fast.handler(request, match, body)
        except Exception as exc:
            answer = await self._handle(request, exc)
        if answer is None:
            return False
        await answer(scope, receive, send)
        return True

    async def _handle(self, request: Request, exc: Exception) -> Response:
        """The app's answer to an exception: its handler for the status code or the nearest class, else a 500."""
        handler = self.handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((self.handlers[c] for c in type(exc).__mro__ if c in self.handlers), None)
        if handler is None:
            if isinstance(exc, HTTPException):
                return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
            scope = request.scope
            log.error("unhandled error on %s %s: %s", scope["method"], scope["path"], type(exc).__name__, exc_info=exc)
            return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)
        response = handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
        assert isinstance(response, Response)
        return response
