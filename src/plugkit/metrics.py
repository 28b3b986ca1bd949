"""Prometheus metrics (prometheus-client): the toolkit's request metrics, a small API the rest of the code counts
through, and `/metrics`.

Under `plugkit serve --workers N` every worker writes its values to files in `PROMETHEUS_MULTIPROC_DIR` (the serve
command sets it up) and `/metrics`, whichever worker answers it, reads them all (the client's multiprocess mode).

`/metrics` is not for the public internet: it answers loopback clients only (and no request a proxy forwarded), or,
when `PLUGKIT_METRICS_TOKEN` is set, any client that sends that token as a bearer credential (compared in constant
time), and only those.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.types import ASGIApp, Receive, Scope, Send

from plugkit.errors import json_messages

log = logging.getLogger("plugkit")

METRICS_PATH = "/metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 45.0)

REQUESTS = Counter(
    "plugkit_requests", "HTTP requests answered, by operationId (or route) and status", ["operation", "status"]
)
LATENCY = Histogram(
    "plugkit_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by operationId (or route)",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("plugkit_requests_in_flight", "Requests being handled", multiprocess_mode="livesum")
REJECTIONS = Counter(
    "plugkit_rejections", "Requests refused before their operation ran, by reason (rate_limit, auth)", ["reason"]
)
OAUTH_GRANTS = Counter("plugkit_oauth_grants", "OAuth tokens issued, by grant type", ["grant_type"])


def count_rejection(reason: str) -> None:
    """Count a request refused before its operation ran: "rate_limit" (429) or "auth" (401/403)."""
    REJECTIONS.labels(reason).inc()


def count_oauth_grant(grant_type: str) -> None:
    """Count an access token issued by the OAuth token endpoint ("authorization_code", "refresh_token")."""
    OAUTH_GRANTS.labels(grant_type).inc()


MetricsHook = Callable[[], Awaitable[None]]
"""Run before `/metrics` is rendered, to bring gauges up to date (e.g. an index's size)."""


def add_metrics_hook(app: FastAPI, hook: MetricsHook) -> None:
    """Run `hook` before every scrape of the app's `/metrics`."""
    hooks: list[MetricsHook] = app.state.metrics_hooks
    hooks.append(hook)


def render() -> bytes:
    """The metrics in Prometheus' text format: this process's, or every worker's in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def worker_stopped() -> None:
    """Tell multiprocess mode this process is gone, so its live gauges (in-flight requests) stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


@contextmanager
def multiprocess_directory(workers: int) -> Iterator[None]:
    """Around a server with several worker processes: a PROMETHEUS_MULTIPROC_DIR for their metrics, which workers
    inherit. A directory the environment names is emptied of the last run's files; else a new one is made, and
    removed afterwards. One worker needs none."""
    configured = os.environ.get(MULTIPROC_ENV)
    if workers <= 1 and not configured:
        yield
        return
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield
        return
    made = tempfile.mkdtemp(prefix="plugkit-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(made, ignore_errors=True)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsRoute:
    """Answers `GET /metrics` ahead of every other layer, to loopback clients or holders of the metrics token."""

    def __init__(self, app: ASGIApp, token: str | None, hooks: list[MetricsHook]) -> None:
        self.app, self.hooks = app, hooks
        self.token = f"Bearer {token}".encode() if token else None

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = dict(scope["headers"])
        if self.token is not None:
            if hmac.compare_digest(headers.get(b"authorization", b""), self.token):
                return None
            return 401, "metrics need the bearer token set in PLUGKIT_METRICS_TOKEN"
        client = scope.get("client")
        forwarded = b"x-forwarded-for" in headers or b"forwarded" in headers
        if client and _is_loopback(str(client[0])) and not forwarded:
            return None
        return 403, "metrics are served to loopback clients only; set PLUGKIT_METRICS_TOKEN to scrape from elsewhere"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != METRICS_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            status, detail = refused
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            for message in json_messages(status, json.dumps({"detail": detail}).encode(), extra):
                await send(message)
            return
        for hook in self.hooks:
            try:
                await hook()
            except Exception as exc:  # a gauge left as it was is better than no metrics at all
                log.warning("metrics hook %s failed: %s", getattr(hook, "__qualname__", hook), exc)
        body = render()
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
