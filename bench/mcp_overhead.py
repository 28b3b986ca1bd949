"""What the MCP bridge costs per call: the same TODO read over REST and as an MCP tool, on one real server.

Run: python bench/mcp_overhead.py [--calls 200]. Writes bench/results/mcp_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def measure(base: str, calls: int) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base) as http:
        for i in range(20):
            await http.post("/todos/bench", json={"todo": f"todo {i}"})
        rest: list[float] = []
        for _ in range(calls):
            start = time.perf_counter()
            (await http.get("/todos/bench")).raise_for_status()
            rest.append(time.perf_counter() - start)
        # The same tool call as one plain JSON-RPC POST (stateless server, JSON response): the server's side of an
        # MCP call without the SDK client's own work.
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        body["params"] = {"name": "getTodos", "arguments": {"username": "bench"}}
        raw: list[float] = []
        for _ in range(calls):
            start = time.perf_counter()
            answer = await http.post("/mcp", json=body, headers=headers)
            raw.append(time.perf_counter() - start)
            assert answer.status_code == 200 and "result" in answer.json(), answer.text
    tool: list[float] = []
    async with Client(f"{base}/mcp") as client:
        for _ in range(calls):
            start = time.perf_counter()
            result = await client.call_tool("getTodos", {"username": "bench"})
            tool.append(time.perf_counter() - start)
            assert not result.is_error
    return {
        "rest_get_todos": summary(rest),
        "mcp_json_rpc_post_get_todos": summary(raw),
        "mcp_call_get_todos": summary(tool),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as data_dir:
        command = [
            sys.executable,
            "-m",
            "plugkit",
            "serve",
            "todo",
            "--mcp",
            "--port",
            str(port),
            "--data-dir",
            data_dir,
        ]
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(150):
                try:
                    if httpx.get(f"{base}/.well-known/ai-plugin.json", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            results = anyio.run(measure, base, args.calls)
        finally:
            server.terminate()
            server.wait(timeout=20)
    report = {
        "what": "sequential getTodos (20 todos) on one `plugkit serve todo --mcp` process: REST, the MCP tools/call as "
        "one plain JSON-RPC POST (the server's side), and the official SDK client's call_tool (the client's work too)",
        "calls": args.calls,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        **results,
    }
    out = ROOT / "bench" / "results" / "mcp_overhead.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
