"""What request observation costs per request: the TODO plugin's GET (its fast path, ~the cheapest request there
is) called in-process through the whole ASGI stack, with and without plugkit.observe (Prometheus metrics, and the
request log line as text or JSON written to /dev/null), side by side in alternating rounds.

Run: python bench/ops.py [--requests 5000 --rounds 7]. Writes bench/results/ops.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from plugkit.logs import JsonFormatter, RequestIdFilter, TextFormatter
from plugkit.observe import ObserveRequests
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("none", "metrics", "metrics+text log", "metrics+json log")


def build(variant: str, data_dir: Path) -> Any:
    app = create_app(TodoSettings(data_dir=data_dir, access_log=variant != "metrics"))
    if variant == "none":
        app.user_middleware = [m for m in app.user_middleware if m.cls is not ObserveRequests]
    return app


async def call(app: Any, scope: dict[str, Any]) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


def scope_for(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:5002")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 5002),
        "state": {},
    }


def log_to_devnull(variant: str) -> logging.Handler:
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(JsonFormatter() if "json" in variant else TextFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("plugkit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


async def run(requests: int, rounds: int) -> dict[str, Any]:
    per_request_us: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        apps = {v: build(v, Path(tmp) / v.replace(" ", "_").replace("+", "_")) for v in VARIANTS}
        contexts = [app.router.lifespan_context(app) for app in apps.values()]
        for context in contexts:
            await context.__aenter__()
        scope = scope_for("/todos/alice")
        try:
            for app in apps.values():
                for _ in range(200):  # warm up: routes, caches, the middleware stack
                    assert await call(app, scope) == 200
            for _ in range(rounds):
                for variant in VARIANTS:
                    log_to_devnull(variant)
                    app = apps[variant]
                    start = time.perf_counter()
                    for _ in range(requests):
                        await call(app, scope)
                    per_request_us[variant].append((time.perf_counter() - start) / requests * 1e6)
        finally:
            for context in reversed(contexts):
                await context.__aexit__(None, None, None)
    base = per_request_us["none"]
    result: dict[str, Any] = {}
    for variant, samples in per_request_us.items():
        extra = [s - b for s, b in zip(samples, base, strict=True)]
        result[variant] = {
            "median_us_per_request": round(statistics.median(samples), 2),
            "min_us": round(min(samples), 2),
            "max_us": round(max(samples), 2),
            "median_added_us": round(statistics.median(extra), 2),
            "added_range_us": [round(min(extra), 2), round(max(extra), 2)],
        }
    return result


async def isolated(requests: int, rounds: int) -> dict[str, Any]:
    """The middleware alone: ObserveRequests around an app that answers at once, minus that app called bare."""
    from fastapi import FastAPI

    routes = FastAPI()

    @routes.get("/todos/{username}", operation_id="getTodos")
    async def get_todos(username: str) -> dict[str, str]:
        return {}

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    scope = scope_for("/todos/alice")
    added: dict[str, list[float]] = {v: [] for v in VARIANTS[1:]}
    for _ in range(rounds):
        for variant in VARIANTS[1:]:
            log_to_devnull(variant)
            settings = TodoSettings(access_log=variant != "metrics")
            wrapped = ObserveRequests(bare, settings, lambda: routes.routes)
            start = time.perf_counter()
            for _ in range(requests):
                await bare(dict(scope), receive, send)
            middle = time.perf_counter()
            for _ in range(requests):
                await wrapped(dict(scope), receive, send)
            end = time.perf_counter()
            added[variant].append(((end - middle) - (middle - start)) / requests * 1e6)
    return {
        v: {"median_added_us": round(statistics.median(xs), 2), "range_us": [round(min(xs), 2), round(max(xs), 2)]}
        for v, xs in added.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results = asyncio.run(run(args.requests, args.rounds))
    alone = asyncio.run(isolated(args.requests, args.rounds))
    document = {
        "what": "per-request cost of plugkit.observe (Prometheus metrics + one log line) on the TODO GET fast path, "
        "in-process ASGI calls (no network), variants alternating round by round",
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "results": results,
        "middleware_alone": alone,
        "middleware_alone_what": "ObserveRequests around an ASGI app that answers at once, minus that app called "
        "bare: the middleware's own cost per request",
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1_5_15_min_at_end": [round(x, 1) for x in os.getloadavg()],
        },
        "note": "a shared 2-core machine with other engineers' tests running: compare the variants of one run, "
        "not absolute figures across runs",
    }
    out = ROOT / "bench" / "results" / "ops.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({"results": results, "middleware_alone": alone}, indent=2))


if __name__ == "__main__":
    main()
