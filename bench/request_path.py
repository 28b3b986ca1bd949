"""Every operation's request path against bare FastAPI: each plugin's reads and writes over HTTP, side by side.

For each plugin a real `plugkit serve NAME` (its defaults, one worker) and a bare FastAPI app (bench/bare_app.py:
the same payloads from memory with `JSONResponse`, writes to a dict) both run under uvicorn pinned to core 0; wrk
drives one at a time from core 1 (`taskset -c 1 wrk -t1 -c16`). Rounds alternate the two so that both see the same
machine; the table gives each route's median requests/s, the spread over rounds and the ratio of the medians, and
the ratio of the servers' CPU time per request (from /proc: what a core alone would give each, much less moved by
what else the shared machine runs than requests/s).

Also measured: the per-address rate limit's cost (todo GET with 127.0.0.1 not exempt), and sports under the
reliability run's load (64 connections, 60 s, its four calls round-robin).
Results: bench/results/request_path.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]

from todo import free_port, wait_up, with_cpu, wrk  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "request_path.json"
READ_GOAL, WRITE_GOAL = 0.6, 0.4


@dataclass(frozen=True)
class Case:
    plugin: str
    method: str
    path: str
    body: str | None = None  # JSON
    write: bool = False


CASES = (
    Case("todo", "GET", "/todos/reader"),
    Case("todo", "GET", "/.well-known/ai-plugin.json"),
    Case("todo", "GET", "/openapi.json"),
    Case("todo", "POST", "/todos/writer", '{"todo": "benchmark item"}', write=True),
    Case("todo", "DELETE", "/todos/writer/{id}", write=True),
    Case("sports", "GET", "/teams"),
    Case("sports", "GET", "/players?query=james"),
    Case("sports", "GET", "/games?team_ids[]=2&limit=25"),
    Case("sports", "GET", "/stats?player_ids[]=237&limit=25"),
    Case("sports", "GET", "/season_averages?season=2023&player_ids[]=237&player_ids[]=115"),
    Case("sports-uncached", "GET", "/teams"),
    Case("sports-uncached", "GET", "/players?query=james"),
    Case("sports-uncached", "GET", "/games?team_ids[]=2&limit=25"),
    Case("sports-uncached", "GET", "/stats?player_ids[]=237&limit=25"),
    Case("sports-uncached", "GET", "/season_averages?season=2023&player_ids[]=237&player_ids[]=115"),
    Case("retrieval", "GET", "/documents?limit=20"),
    Case("retrieval", "GET", "/fetch?id=doc-7"),
    Case("retrieval", "GET", "/documents/doc-7"),
)
# A label of CASES: the plugin it serves and its environment. sports-uncached: the sports plugin with its answer
# cache off (PLUGKIT_CACHE_SIZE=0), every request a query: the figure for questions not asked before.
SERVED: dict[str, tuple[str, dict[str, str]]] = {"sports-uncached": ("sports", {"PLUGKIT_CACHE_SIZE": "0"})}
SPORTS_LOAD = ("/players?query=james", "/teams", "/games?team_ids[]=14&limit=25", "/stats?player_ids[]=237&limit=25")


PIDS: dict[str, int] = {}  # each running server's process, by base URL: its CPU time is read per run


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int, probe: str, cwd: Path = ROOT) -> Iterator[str]:
    proc = subprocess.Popen([*pinned(0), *cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    PIDS[base] = proc.pid
    try:
        wait_up(f"{base}{probe}", proc)
        yield base
    finally:
        PIDS.pop(base, None)
        proc.terminate()
        proc.wait(timeout=30)


def plugkit_server(plugin: str, data_dir: Path, extra_env: dict[str, str] | None = None) -> Any:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PLUGKIT_LOG_LEVEL": "warning", **(extra_env or {})}
    cmd = [sys.executable, "-m", "plugkit", "serve", plugin, "--port", str(port), "--data-dir", str(data_dir)]
    return server(cmd, env, port, "/.well-known/ai-plugin.json")


def seed(plugin: str, base: str) -> None:
    with httpx.Client(base_url=base, timeout=120) as client:
        if plugin == "todo":
            for i in range(10):
                client.post("/todos/reader", json={"todo": f"item {i}"}).raise_for_status()
        elif plugin == "retrieval":
            documents = [
                {"id": f"doc-{i}", "text": f"Document {i}. " + "Plugins answer questions from stored text. " * 20}
                for i in range(20)
            ]
            client.post("/upsert", json={"documents": documents}).raise_for_status()


def record(cases: list[Case], base: str) -> dict[str, Any]:
    """The payload of every read, as plugkit answers it: what the bare app serves."""
    payloads = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for case in cases:
            if not case.write:
                response = client.get(case.path)
                response.raise_for_status()
                payloads[f"GET {case.path}"] = response.json()
    return payloads


def script_for(case: Case, first_id: int) -> str:
    if case.method == "DELETE":
        return (
            f"counter = {first_id}\nrequest = function()\n  counter = counter + 1\n"
            f'  return wrk.format("DELETE", "{case.path.split("{")[0]}" .. counter)\nend\n'
        )
    if case.body is not None:
        return (
            f"wrk.method = \"{case.method}\"\nwrk.body = '{case.body}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    return ""


def drive(base: str, case: Case, args: argparse.Namespace, first_id: int = 0) -> dict[str, Any]:
    path = case.path.split("{")[0] if case.method == "DELETE" else case.path
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(script_for(case, first_id))
    try:
        return wrk_pinned(f"{base}{path}", args, Path(script.name))
    finally:
        os.unlink(script.name)


def wrk_pinned(url: str, args: argparse.Namespace, script: Path | None = None, connections: int | None = None) -> Any:
    return wrk(url, 1, connections or args.connections, args.duration, script, prefix=pinned(1))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["requests_per_s"] for r in runs]
    found = {
        "requests_per_s_median": round(statistics.median(rates), 1),
        "requests_per_s_min_max": [round(min(rates), 1), round(max(rates), 1)],
        "p99_ms_median": round(statistics.median(r["p99_ms"] for r in runs), 2),
        "non_2xx": sum(r["non_2xx"] for r in runs),
    }
    cpu = [r["cpu_us_per_request"] for r in runs if "cpu_us_per_request" in r]
    if cpu:  # the server's CPU time per request: what a core alone gives it, whatever else the machine runs
        found["cpu_us_per_request_median"] = round(statistics.median(cpu), 1)
        found["cpu_us_per_request_min_max"] = [min(cpu), max(cpu)]
    return found


def measure_plugin(plugin: str, args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    cases = [c for c in CASES if c.plugin == plugin]
    rows = []
    served, env = SERVED.get(plugin, (plugin, {}))
    with plugkit_server(served, root / plugin, env) as base:
        seed(served, base)
        payload_file = root / f"{plugin}-payloads.json"
        payload_file.write_text(json.dumps(record(cases, base)))
        bare_port = free_port()
        bare_env = {**os.environ, "PLUGKIT_BARE_PAYLOADS": str(payload_file)}
        bare_cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port), "--log-level", "warning"]
        with server(bare_cmd, bare_env, bare_port, "/openapi.json", cwd=ROOT / "bench") as bare:
            next_id = {"plugkit": _next_todo_id(base), "bare": _next_todo_id(bare)} if plugin == "todo" else {}
            for case in cases:
                runs: dict[str, list[dict[str, Any]]] = {"plugkit": [], "bare": []}
                for _ in range(args.rounds):
                    for name, url in (("plugkit", base), ("bare", bare)):
                        first = 0
                        if case.method == "DELETE":  # add todos to delete, then delete them by id, oldest first
                            drive(url, Case("todo", "POST", "/todos/writer", '{"todo": "x"}'), args)
                            first = next_id[name]
                        run = with_cpu(PIDS[url], partial(drive, url, case, args, first))
                        runs[name].append(run)
                        if case.method == "DELETE":  # the next round starts past every id this one asked for
                            next_id[name] = first + run["requests"] + args.connections
                mine, peer = summary(runs["plugkit"]), summary(runs["bare"])
                ratio = round(mine["requests_per_s_median"] / peer["requests_per_s_median"], 3)
                per_cpu = (
                    round(peer["cpu_us_per_request_median"] / mine["cpu_us_per_request_median"], 3)
                    if "cpu_us_per_request_median" in mine and "cpu_us_per_request_median" in peer
                    else None
                )
                goal = WRITE_GOAL if case.write else READ_GOAL
                rows.append(
                    {
                        "plugin": plugin,
                        "operation": f"{case.method} {case.path}",
                        "kind": "write" if case.write else "read",
                        "plugkit": mine,
                        "bare_fastapi": peer,
                        "ratio": ratio,
                        "ratio_per_cpu_second": per_cpu,
                        "goal": f">= {goal}",
                        "met": ratio >= goal,
                    }
                )
                print(f"{plugin:9} {case.method:6} {case.path:60} {ratio:.2f}x (per CPU second {per_cpu}x)", flush=True)
    return rows


def _next_todo_id(base: str) -> int:
    """The id the writer's next todo will get, less one (ids grow by one per todo: one writer, no other user)."""
    response = httpx.post(f"{base}/todos/writer", json={"todo": "marker"}, timeout=10)
    response.raise_for_status()
    return int(response.json()["id"])


def rate_limit_cost(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """todo GET with the rate limit counting every request (127.0.0.1 not exempt, a limit no run reaches)."""
    results = {}
    for label, env in (
        ("exempt", {}),
        ("counted", {"PLUGKIT_RATE_LIMIT_EXEMPT": "[]", "PLUGKIT_RATE_LIMIT_PER_MINUTE": str(10**9)}),
    ):
        with plugkit_server("todo", root / f"ratelimit-{label}", env) as base:
            seed("todo", base)
            case = Case("todo", "GET", "/todos/reader")
            results[label] = summary([drive(base, case, args) for _ in range(args.rounds)])
    results["ratio_counted_to_exempt"] = round(
        results["counted"]["requests_per_s_median"] / results["exempt"]["requests_per_s_median"], 3
    )
    return results


def sports_load(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The reliability run's sports load: 64 connections, its four calls round-robin, server on its defaults."""
    lua = "paths = {" + ", ".join(f'"{p}"' for p in SPORTS_LOAD) + "}\n"
    lua += 'i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format("GET", paths[(i % #paths) + 1])\nend\n'
    with plugkit_server("sports", root / "sports-load") as base, tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(lua)
        f.flush()
        wrk(base, 1, 64, 5, Path(f.name), prefix=pinned(1))  # warm-up
        result = wrk(base, 1, 64, args.load_duration, Path(f.name), timeout_s=10, prefix=pinned(1))
    return {
        "connections": 64,
        "duration_s": args.load_duration,
        "calls": list(SPORTS_LOAD),
        **result,
        "goal": {"requests_per_s": ">= 3000", "p99_ms": "<= 50", "errors": 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=4, help="seconds of load per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plugins", default="todo,sports,sports-uncached,retrieval")
    parser.add_argument("--load-duration", type=int, default=60, help="seconds of the sports load (0: skip)")
    parser.add_argument("--skip-rate-limit", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    started = time.time()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "how": "real `plugkit serve NAME` (defaults, one worker) and bench/bare_app.py (FastAPI, the same payloads "
        "from memory with JSONResponse, writes to a dict), both under uvicorn pinned to core 0; "
        f"`taskset -c 1 wrk -t1 -c{args.connections} -d{args.duration}s`, {args.rounds} rounds alternating the two",
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "goal": {"read": f">= {READ_GOAL}x", "write": f">= {WRITE_GOAL}x"},
        "routes": [],
    }
    with tempfile.TemporaryDirectory(prefix="plugkit-bench-path-") as tmp:
        root = Path(tmp)
        for plugin in args.plugins.split(","):
            result["routes"].extend(measure_plugin(plugin, args, root))
        if not args.skip_rate_limit:
            result["rate_limit"] = rate_limit_cost(args, root)
        if args.load_duration > 0:
            result["sports_load"] = sports_load(args, root)
    result["seconds"] = round(time.time() - started)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| operation | plugkit req/s | bare FastAPI req/s | ratio | goal |")
    print("|---|---|---|---|---|")
    for row in result["routes"]:
        print(
            f"| {row['plugin']} `{row['operation']}` | {row['plugkit']['requests_per_s_median']:,.0f} "
            f"| {row['bare_fastapi']['requests_per_s_median']:,.0f} | {row['ratio']:.2f}x | {row['goal']} |"
        )
    print(json.dumps({k: v for k, v in result.items() if k in ("rate_limit", "sports_load")}, indent=2))


if __name__ == "__main__":
    main()
