"""Request observation: one ASGI middleware that times every request, counts it in the Prometheus metrics, writes
its log line, and gives it a request id (the caller's `X-Request-ID`, or a new one, returned in the response)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugkit import logs, metrics
from plugkit.edge import client_address
from plugkit.settings import PluginSettings

request_log = logging.getLogger("plugkit.request")

UNMATCHED = "unmatched"  # the label of a path no route serves (raw paths would make a label per URL)


def flatten(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The routes an app serves, with those of included routers spelled out (FastAPI nests them)."""
    flat: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None and hasattr(inner, "routes"):
            flat.extend(flatten(inner.routes))
        else:
            flat.append(route)
    return flat


class RouteTable:
    """Which operation a request is for: (operationId or route name, path template) of the first route whose path
    and method match it, else of the first whose path does (a 405), else "unmatched". Matched here rather than read
    from routing's result, since fast paths, credential checks and rate limits answer before routing runs."""

    def __init__(self, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.routes = routes
        self._table: list[tuple[re.Pattern[str], frozenset[str] | None, str, str]] | None = None

    def table(self) -> list[tuple[re.Pattern[str], frozenset[str] | None, str, str]]:
        if self._table is None:  # built on the first request, when every router is included
            rows = []
            for route in flatten(self.routes()):
                regex = getattr(route, "path_regex", None)
                if regex is None:
                    continue
                path = str(getattr(route, "path", "")) or "/"
                name = str(getattr(route, "operation_id", None) or getattr(route, "name", None) or path)
                methods = getattr(route, "methods", None)
                rows.append((regex, frozenset(methods) if methods else None, name, path))
            self._table = rows
        return self._table

    def label(self, method: str, path: str) -> tuple[str, str]:
        partial: tuple[str, str] | None = None
        for regex, methods, name, template in self.table():
            if regex.match(path):
                if methods is None or method in methods or (method == "HEAD" and "GET" in methods):
                    return name, template
                partial = partial or (name, template)
        return partial or (UNMATCHED, UNMATCHED)


class ObserveRequests:
    """Metrics and the log line of every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        settings: PluginSettings,
        routes: Callable[[], Sequence[BaseRoute]],
    ) -> None:
        self.app, self.settings = app, settings
        self.table = RouteTable(routes)
        self.log_requests = settings.access_log
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}  # labelled children, looked up once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = logs.request_id_from(dict(scope["headers"]).get(logs.REQUEST_ID_HEADER))
        token = logs.request_id.set(rid)
        status = 500
        header = (b"x-request-id", rid.encode("ascii"))

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - start
            operation, route = self.table.label(scope["method"], scope["path"])
            series = self._series.get((operation, status))
            if series is None:
                series = self._series[(operation, status)] = (
                    metrics.REQUESTS.labels(operation, str(status)),
                    metrics.LATENCY.labels(operation),
                )
            series[0].inc()
            series[1].observe(elapsed)
            if self.log_requests:
                self.write_log(scope, rid, operation, route, status, elapsed)
            logs.request_id.reset(token)

    def write_log(self, scope: Scope, rid: str, operation: str, route: str, status: int, elapsed: float) -> None:
        client = client_address(scope, self.settings)
        method, path = scope["method"], _printable(scope["path"])
        fields = {
            "method": method,
            "path": path,
            "route": route,
            "operation_id": operation,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "client": client,
            "request_id": rid,
        }
        if not request_log.isEnabledFor(logging.INFO):
            return
        # makeRecord + handle rather than .info(): the same record, without walking the stack for the caller's
        # file and line, which a request line does not need and which costs more than the rest of it.
        record = request_log.makeRecord(
            request_log.name,
            logging.INFO,
            __file__,
            0,
            '%s "%s %s" %d %.1f ms op=%s id=%s',
            (client, method, path, status, elapsed * 1000, operation, rid),
            None,
            extra={"http": fields, "request_id": rid},
        )
        request_log.handle(record)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def _printable(path: str) -> str:
    """The path with control characters escaped, so a request cannot forge a log line."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", path)
