"""What authentication costs: GET /todos/alice on a real todo server under each auth method (wrk), and the time of
one Argon2id password check (the sign-in page's cost per attempt).

Each server runs on 127.0.0.1 under uvicorn, one worker, access log off; the credential is obtained the way a real
caller obtains it (CLI token, OAuth flow). Results: bench/results/auth.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.auth.oauth_flow import code_grant, register_with_cli, run_plugkit, sign_in  # noqa: E402
from tests.helpers import free_port  # noqa: E402

from plugkit.auth.users import _hasher  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "auth.json"
SERVICE_TOKEN = "svc_bench_7Kq2mX9pL4vR8tZ1wN6y"


def wrk(url: str, header: str | None, args: argparse.Namespace) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url]
    if header:
        cmd[1:1] = ["-H", f"Authorization: {header}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": rps,
        "p50_ms": round(float(p50.group(1)) * scale, 3),  # type: ignore[union-attr]
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


async def oauth_token(base: str, data_dir: Path) -> str:
    client_id, secret = register_with_cli(data_dir)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        query = await sign_in(client, client_id)
        return str((await code_grant(client, client_id, secret, query["code"])).json()["access_token"])


def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"plugkit-bench-auth-{kind}-"))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "PLUGKIT_ACCESS_LOG": "false",
        "PLUGKIT_SERVICE_TOKEN": SERVICE_TOKEN,
        "PLUGKIT_LOG_LEVEL": "warning",
    }
    cmd = [
        sys.executable,
        "-m",
        "plugkit",
        "serve",
        "todo",
        "--auth",
        kind,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/.well-known/ai-plugin.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        header = None
        if kind == "service_http":
            header = f"Bearer {SERVICE_TOKEN}"
        elif kind == "user_http":
            header = (
                "Bearer "
                + run_plugkit("tokens", "create", "--user", "alice", "--data-dir", str(data_dir)).stdout.split()[-1]
            )
        elif kind == "oauth":
            header = "Bearer " + asyncio.run(oauth_token(base, data_dir))
        auth = {"Authorization": header} if header else {}
        for i in range(10):
            httpx.post(f"{base}/todos/alice", json={"todo": f"item {i}"}, headers=auth, timeout=10).raise_for_status()
        wrk(f"{base}/todos/alice", header, argparse.Namespace(connections=args.connections, duration=1))  # warm-up
        return wrk(f"{base}/todos/alice", header, args)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def argon2_ms(rounds: int = 5) -> float:
    stored = _hasher.hash("correct horse battery staple")
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        _hasher.verify(stored, "correct horse battery staple")
        times.append((time.perf_counter() - start) * 1000)
    return round(median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "tool": "wrk",
        "threads": 1,
        "connections": args.connections,
        "duration_s": args.duration,
        "cores": os.cpu_count(),
        "note": "shared 2-core machine: other work ran at the same time, so compare methods, not absolute figures",
        "argon2id_verify_ms_median": argon2_ms(),
        "get_todos": {},
    }
    for kind in ("none", "service_http", "user_http", "oauth"):
        results["get_todos"][kind] = measure(kind, args)
        print(kind, results["get_todos"][kind], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
