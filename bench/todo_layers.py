"""Where one GET /todos/{user} spends its time, layer by layer, in the app `plugkit serve todo` builds (its defaults;
the access log off, as bench/todo.py runs it).

In-process, no sockets: each layer of the ASGI stack (uvicorn's proxy-headers middleware, then FastAPI's and plugkit's
middlewares down to the fast path) is called directly with the scope uvicorn makes, many times; a layer's own cost is
its time less the time of the layer under it. CPU time of the process (other work on a busy machine counts less than
in wall time), the minimum over rounds. Results: bench/results/todo_layers.json (or --out), one entry per --label
(`PYTHONPATH=<an older checkout>/src ... --label before` measures an older version the same way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def request_scope(app: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 5000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/todos/reader",
        "raw_path": b"/todos/reader",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:5000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "state": {},
        "app": app,
    }


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from plugkit.cli.serve import plugin_app

    app = plugin_app()
    outer = ProxyHeadersMiddleware(app, "127.0.0.1")
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await events.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, events.get, lifespan_send)
    )
    await started.wait()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    body = b'{"todo": "benchmark item"}'
    for _ in range(10):
        scope = request_scope(app)
        scope.update(method="POST", headers=[(b"content-type", b"application/json"), (b"content-length", b"26")])

        async def post_body() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await outer(scope, post_body, send)
    sent.clear()
    await outer(request_scope(app), receive, send)
    assert sent[0]["status"] == 200, sent
    answer_bytes = len(sent[-1]["body"])

    layers: list[tuple[str, Any]] = [("uvicorn ProxyHeadersMiddleware", outer), ("FastAPI.__call__", app)]
    node = app.middleware_stack
    while node is not None:
        name = type(node).__name__
        layers.append((name, node))
        if name == "FastPaths":
            break
        node = getattr(node, "app", None)

    async def timed(layer: Any) -> float:
        start = time.process_time()
        for _ in range(requests):
            await layer(request_scope(app), receive, send)
        sent.clear()
        return (time.process_time() - start) / requests * 1e6

    for _, layer in layers:
        await timed(layer)
    found: dict[str, list[float]] = {name: [] for name, _ in layers}
    for _ in range(rounds):
        for name, layer in layers:
            found[name].append(await timed(layer))
    lows = [min(found[name]) for name, _ in layers]
    table = []
    for i, (name, _) in enumerate(layers):
        below = lows[i + 1] if i + 1 < len(layers) else 0.0
        table.append({"layer": name, "inclusive_us": round(lows[i], 1), "own_us": round(lows[i] - below, 1)})
    await events.put({"type": "lifespan.shutdown"})
    await lifespan
    return {"answer_bytes": answer_bytes, "layers": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="requests per timing")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "todo_layers.json")
    parser.add_argument("--label", default="current", help="the run's name in the results file (others are kept)")
    args = parser.parse_args()
    os.environ.update(
        PLUGKIT_DATA_DIR=tempfile.mkdtemp(prefix="plugkit-bench-layers-"),
        PLUGKIT_SERVE_PLUGIN="todo",
        PLUGKIT_SERVE_MCP="false",
        PLUGKIT_ACCESS_LOG="false",
        PLUGKIT_LOG_LEVEL="warning",
    )
    import uvloop

    load = [round(x, 2) for x in os.getloadavg()]
    found = uvloop.run(measure(args.requests, args.rounds))

    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "how": f"in-process, {args.requests} GET /todos/reader (10 todos) per timing, min over {args.rounds} rounds "
        "of CPU time; own = a layer's time less the next one's (noisy to about 2 us on a busy machine)",
        "load_average_at_start": load,
        **found,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else {}
    runs[args.label] = result
    args.out.write_text(json.dumps({"about": __doc__.split("\n\n")[0], "runs": runs}, indent=2) + "\n")
    for row in found["layers"]:
        print(f"{row['layer']:34s} inclusive {row['inclusive_us']:7.1f} us   own {row['own_us']:6.1f} us")


if __name__ == "__main__":
    sys.exit(main())
