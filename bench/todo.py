"""Throughput of plugkit's todo server against the original example (Quart, in memory), under the same wrk load.

Per core: each server is one process pinned to core 0 (taskset), wrk runs on core 1. The servers run side by side,
measured in alternating rounds: plugkit as served (the fast paths derived from its routes), plugkit with
PLUGKIT_FAST_PATHS=false (FastAPI's own request handling), the example, and with --before an older plugkit. Every
server runs without its access log (--access-log: with it, as each runs by default). The plugkit servers write every
todo to their SQLite file (WAL, synchronous=NORMAL); the example keeps them in a dict. Results:
bench/results/todo.json (medians and spread of the rounds, ratios of the medians). Beside requests/s, each server's
CPU time per request it answered (from /proc): on a shared machine requests/s moves with what else runs on the
cores, CPU time per request much less (ratio_*_per_cpu_second: requests per second of a core, against the example's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
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


def serve_todo(port: int, data_dir: Path) -> list[str]:
    """The command that serves plugkit's todo plugin on its defaults."""
    return [sys.executable, "-m", "plugkit", "serve", "todo", "--port", str(port), "--data-dir", str(data_dir)]


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


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def start(cmd: list[str], cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*pinned(0), *cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/todos/warmup", proc)
        for i in range(10):
            httpx.post(f"{base}/todos/reader", json={"todo": f"item {i}"}, timeout=10).raise_for_status()
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    return proc


def cpu_seconds(pid: int) -> float | None:
    """The CPU time a process has used (user + system, all its threads), from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(pid: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A wrk run, with the server's CPU time per request it answered: what a core alone would give it does not
    depend on what else the machine runs, as requests/s does."""
    before = cpu_seconds(pid)
    found = run()
    after = cpu_seconds(pid)
    if before is not None and after is not None and found["requests"]:
        found["cpu_us_per_request"] = round((after - before) / found["requests"] * 1e6, 1)
    return found


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["requests_per_s"] for r in runs]
    found = {
        "requests_per_s": round(statistics.median(rates), 1),
        "requests_per_s_min_max": [min(rates), max(rates)],
        "p99_ms_median": round(statistics.median(r["p99_ms"] for r in runs), 2),
        "non_2xx": sum(r["non_2xx"] for r in runs),
    }
    cpu = [r["cpu_us_per_request"] for r in runs if "cpu_us_per_request" in r]
    if cpu:
        found["cpu_us_per_request"] = round(statistics.median(cpu), 1)
        found["cpu_us_per_request_min_max"] = [min(cpu), max(cpu)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--access-log", action="store_true", help="every server writes its access log (their defaults; to /dev/null)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--before", type=Path, help="the src folder of an older plugkit, measured beside this one")
    parser.add_argument("--peers", type=Path, default=PEER_DIR, help="the folder holding the example (seed_todo.py)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    data_dir = Path(tempfile.mkdtemp(prefix="plugkit-bench-todo-"))
    base_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PLUGKIT_ACCESS_LOG": str(args.access_log).lower()}
    base_env["PLUGKIT_LOG_LEVEL"] = "info" if args.access_log else "warning"  # request lines are at info
    servers: dict[str, tuple[list[str], Path, dict[str, str], int]] = {}
    for name, fast in (("plugkit", "true"), ("plugkit_without_fast_paths", "false")):
        port = free_port()
        cmd = serve_todo(port, data_dir / name)
        servers[name] = (cmd, ROOT, {**base_env, "PLUGKIT_FAST_PATHS": fast}, port)
    if args.before is not None:  # an older plugkit, as served by default, side by side
        port = free_port()
        cmd = serve_todo(port, data_dir / "plugkit_before")
        servers["plugkit_before"] = (cmd, ROOT, {**base_env, "PYTHONPATH": str(args.before)}, port)
    port = free_port()
    example = [sys.executable, "-m", "uvicorn", "seed_todo:app", "--port", str(port)]
    example += [] if args.access_log else ["--no-access-log"]
    example += ["--log-level", "info" if args.access_log else "warning"]
    servers["example"] = (example, args.peers, dict(os.environ), port)
    load_average = [round(x, 2) for x in os.getloadavg()]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {"get": [], "post": []} for name in servers}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(POST_SCRIPT)
    try:
        for name, spec in servers.items():  # inside the try: a server that fails to start stops the others
            procs[name] = start(*spec)
        for _name, (_, _, _, port) in servers.items():  # warm-up
            wrk(f"http://127.0.0.1:{port}/todos/reader", 1, args.connections, 2, prefix=pinned(1))
        for _ in range(args.rounds):
            for name, (_, _, _, port) in servers.items():
                base = f"http://127.0.0.1:{port}"
                pid = procs[name].pid
                load = partial(wrk, threads=1, connections=args.connections, duration=args.duration, prefix=pinned(1))
                get = with_cpu(pid, partial(load, f"{base}/todos/reader"))
                post = with_cpu(pid, partial(load, f"{base}/todos/writer", script=Path(script.name)))
                runs[name]["get"].append(get)
                runs[name]["post"].append(post)
    finally:
        os.unlink(script.name)
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    db_bytes = {name: (data_dir / name / "todo.db").stat().st_size for name in servers if name != "example"}
    shutil.rmtree(data_dir, ignore_errors=True)

    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool": "wrk",
        "how": f"each server one process pinned to core 0, `taskset -c 1 wrk -t1 -c{args.connections} "
        f"-d{args.duration}s`, {args.rounds} rounds alternating the servers; medians and [min, max]",
        "cores": os.cpu_count(),
        "access_logs": "written (to /dev/null)" if args.access_log else "off on every server",
        "load_average_at_start": load_average,
        "plugkit_storage": "SQLite file (WAL), every todo written to disk",
        "example_storage": "in-memory dict, one process (its state cannot be shared by workers)",
        "plugkit_db_bytes_after": db_bytes,
        "goal": {"get": ">= 1.5", "post": ">= 1.2"},
    }
    for name in servers:
        result[name] = {kind: summary(r) for kind, r in runs[name].items()}
    for name in [n for n in servers if n != "example"]:
        for kind in ("get", "post"):
            ratio = result[name][kind]["requests_per_s"] / result["example"][kind]["requests_per_s"]
            result[f"ratio_{kind}_{name}"] = round(ratio, 3)
            if "cpu_us_per_request" in result[name][kind] and "cpu_us_per_request" in result["example"][kind]:
                per_cpu = result["example"][kind]["cpu_us_per_request"] / result[name][kind]["cpu_us_per_request"]
                result[f"ratio_{kind}_{name}_per_cpu_second"] = round(per_cpu, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
