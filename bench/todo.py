"""Throughput of plugkit's todo server against the original example (Quart, in memory), under the same wrk load.

Both servers run on 127.0.0.1 under uvicorn without access logs; wrk drives each with the same threads, connections
and duration. plugkit writes every todo to its SQLite file; the example keeps them in a dict.
Results: bench/results/todo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT.parent / "shared" / "peers"
RESULTS = ROOT / "bench" / "results" / "todo.json"
POST_SCRIPT = """wrk.method = "POST"
wrk.body = '{"todo": "benchmark item"}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def wrk(
    url: str,
    threads: int,
    connections: int,
    duration: int,
    script: Path | None = None,
    timeout_s: int = 2,
    prefix: list[str] | None = None,
) -> dict[str, Any]:
    """One wrk run (after `prefix`, a taskset say): requests/s, requests, p99, non-2xx answers, socket errors."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout_s}s", "--latency", url]
    if script:
        args[1:1] = ["-s", str(script)]
    args[:0] = prefix or []
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests_per_s": rps,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": round(float(p99.group(1)) * scale, 3),  # type: ignore[union-attr]
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def measure(cmd: list[str], cwd: Path, env: dict[str, str], port: int, args: argparse.Namespace) -> dict[str, Any]:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/todos/warmup", proc)
        for i in range(10):
            httpx.post(f"{base}/todos/reader", json={"todo": f"item {i}"}, timeout=10).raise_for_status()
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(POST_SCRIPT)
        wrk(f"{base}/todos/reader", args.threads, args.connections, 2)  # warm-up
        get = wrk(f"{base}/todos/reader", args.threads, args.connections, args.duration)
        post = wrk(f"{base}/todos/writer", args.threads, args.connections, args.duration, Path(script.name))
        os.unlink(script.name)
        return {"get": get, "post": post}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--workers", default="1,2", help="plugkit worker processes to measure, comma-separated (the example has one)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    data_dir = Path(tempfile.mkdtemp(prefix="plugkit-bench-todo-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PLUGKIT_ACCESS_LOG": "false", "PLUGKIT_LOG_LEVEL": "warning"}
    runs: dict[int, dict[str, Any]] = {}
    for workers in [int(w) for w in args.workers.split(",")]:
        port = free_port()
        plugkit_cmd = [sys.executable, "-m", "plugkit", "serve", "todo", "--port", str(port)]
        plugkit_cmd += ["--data-dir", str(data_dir / f"w{workers}"), "--workers", str(workers)]
        runs[workers] = measure(plugkit_cmd, ROOT, env, port, args)
    peer_port = free_port()
    peer_cmd = [sys.executable, "-m", "uvicorn", "seed_todo:app", "--port", str(peer_port), "--no-access-log"]
    peer_cmd += ["--log-level", "warning"]
    peer = measure(peer_cmd, PEER_DIR, dict(os.environ), peer_port, args)
    db_bytes = {w: (data_dir / f"w{w}" / "todo.db").stat().st_size for w in runs}
    shutil.rmtree(data_dir, ignore_errors=True)

    result: dict[str, Any] = {
        "tool": "wrk",
        "threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "plugkit_storage": "SQLite file (WAL), every todo written to disk",
        "example_storage": "in-memory dict, one process (its state cannot be shared by workers)",
        "plugkit_db_bytes_after": db_bytes,
        "example": peer,
        "goal": {"get": ">= 1.5", "post": ">= 1.0"},
    }
    for workers, run in runs.items():
        result[f"plugkit_{workers}_workers"] = run
        result[f"ratio_get_rps_{workers}_workers"] = round(
            run["get"]["requests_per_s"] / peer["get"]["requests_per_s"], 3
        )
        result[f"ratio_post_rps_{workers}_workers"] = round(
            run["post"]["requests_per_s"] / peer["post"]["requests_per_s"], 3
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
