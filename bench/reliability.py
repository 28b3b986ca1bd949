"""The full reliability run over every registered plugin: fuzzing, hostile inputs, load, crash-and-restart.

For each plugin in tests/reliability/harness.py's TARGETS, on real `plugkit serve NAME` processes on 127.0.0.1:
- schemathesis cases generated from the plugin's own spec (valid and invalid data): server errors, spec violations;
- every hostile input: a 4xx naming the problem and the server healthy afterwards;
- 64 connections for 60 s (wrk, else an httpx loop): requests/s, p99, errors, resident memory before and after;
- 20 rounds of kill -9 in the middle of a stream of writes and a restart: acknowledged writes lost.

Writes bench/results/reliability.json, prints a Markdown summary, and exits 1 when a figure breaks its bar
(any server error, spec violation, load error, hostile input answered badly, lost write; memory growth of 10%+).
`--quick` shortens everything for a check of the harness itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.helpers import PluginServer  # noqa: E402
from tests.reliability.harness import (  # noqa: E402
    AUTH_PASS,
    TARGETS,
    Target,
    authenticated,
    crash_rounds,
    fuzz,
    hostile_suite,
    load,
    seed,
)

RESULTS = ROOT / "bench" / "results" / "reliability.json"
MAX_RSS_GROWTH = 0.10
# fuzz, hostile inputs and load on one server; kill -9 rounds; the PostgreSQL pass; the fuzzing under each auth method
PARTS = ("fuzz", "hostile", "load", "crash", "postgres", "auth")


def run_plugin(target: Target, args: argparse.Namespace, root: Path, *, with_load: bool = True) -> dict[str, Any]:
    """Every part of the run against one plugin; `problems` lists what broke a bar (a part that fails to run is one)."""
    figures: dict[str, Any] = {}
    problems: list[str] = []
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(dir=root))

    def fuzzing(server: PluginServer) -> None:
        print(f"[{target.name}] fuzzing {args.cases} cases", flush=True)
        fuzzed = fuzz(server.base_url, args.cases, seed=args.seed)
        figures["fuzz"] = asdict(fuzzed)
        if fuzzed.server_errors or fuzzed.spec_violations:
            problems.append(f"fuzz: {fuzzed.server_errors} server errors, {fuzzed.spec_violations} spec violations")

    def hostile_inputs(server: PluginServer) -> None:
        print(f"[{target.name}] hostile inputs", flush=True)
        hostile = hostile_suite(server, target)
        figures["hostile"] = {
            "cases": len(hostile),
            "passed": sum(h.ok for h in hostile),
            "results": [asdict(h) for h in hostile],
        }
        problems.extend(f"hostile: {h.name}: {h.why}" for h in hostile if not h.ok)

    def loading(server: PluginServer) -> None:
        print(f"[{target.name}] load: {args.connections} connections for {args.duration} s", flush=True)
        loaded = load(server, target, connections=args.connections, duration=args.duration, warmup=args.warmup)
        figures["load"] = asdict(loaded)
        if loaded.errors:
            problems.append(f"load: {loaded.errors} errors")
        if loaded.rss_growth >= MAX_RSS_GROWTH:
            problems.append(f"load: resident memory grew {loaded.rss_growth:.1%}")

    def crashing() -> None:
        print(f"[{target.name}] crash: {args.rounds} rounds of kill -9", flush=True)
        crashed = crash_rounds(target, root / f"{target.name}-crash", args.rounds, seed=args.seed)
        figures["crash"] = asdict(crashed)
        problems.extend(f"crash: {p}" for p in crashed.problems[:20])

    def attempt(part: str, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # recorded, so that one broken part does not lose the other figures
            traceback.print_exc()
            problems.append(f"{part}: the run failed: {exc!r}")

    def serving() -> None:
        with target.serve(root / f"{target.name}-serve") as server:
            seed(server, target)
            if "fuzz" in args.parts:
                attempt("fuzz", lambda: fuzzing(server))
            if "hostile" in args.parts:
                attempt("hostile", lambda: hostile_inputs(server))
            if with_load and "load" in args.parts:
                attempt("load", lambda: loading(server))

    attempt("serve", serving)
    if target.crash is not None and "crash" in args.parts:
        attempt("crash", crashing)
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["problems"] = problems
    return figures


@contextmanager
def postgres_url(root: Path) -> Iterator[str]:
    """A real PostgreSQL server from the pgserver package, for the PostgreSQL pass."""
    import pgserver

    server = pgserver.get_server(str(root / "postgres"), cleanup_mode="stop")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


def markdown(results: dict[str, Any]) -> str:
    """The summary table for the README."""
    lines = [
        "| plugin | fuzz cases | server errors | spec violations | hostile inputs passed | load req/s | p99 ms "
        "| load errors | RSS before → after MB (growth) | crash rounds | acknowledged writes | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["plugins"].items():
        f, h, c = r.get("fuzz") or {}, r.get("hostile") or {}, r.get("crash") or {}
        row = [name, f.get("cases", "-"), f.get("server_errors", "-"), f.get("spec_violations", "-")]
        row.append(f"{h['passed']}/{h['cases']}" if h else "-")
        if ld := r.get("load"):
            rss = f"{ld['rss_before_mb']} → {ld['rss_after_mb']} ({ld['rss_growth']:+.1%})"
            row += [f"{ld['requests_per_s']:.0f}", f"{ld['p99_ms']:.0f}", ld["errors"], rss]
        else:
            row += ["-"] * 4
        row += [c.get("rounds", "-"), c.get("acknowledged", "-"), c.get("losses", "-")]
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--cases", type=int, default=600, help="generated requests per plugin (>= 500 recorded)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before memory is first read")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20, help="kill -9 rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100 cases, 10 s of load, 5 rounds")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL pass of database plugins")
    parser.add_argument(
        "--parts",
        nargs="*",
        default=list(PARTS),
        choices=list(PARTS),
        help="the parts to run (default: all); e.g. `--plugins sports --parts load --out FILE` for one figure",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.cases, args.duration, args.warmup, args.rounds = 100, 10.0, 2.0, 5

    started = time.monotonic()
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "plugins": {},
    }
    with tempfile.TemporaryDirectory(prefix="plugkit-reliability-") as root:
        for name in args.plugins:
            results["plugins"][name] = run_plugin(TARGETS[name], args, Path(root))
        on_postgres = [TARGETS[n] for n in args.plugins if TARGETS[n].postgres]
        if on_postgres and not args.no_postgres and "postgres" in args.parts:
            with postgres_url(Path(root)) as url:
                for target in on_postgres:
                    variant = replace(target, env={**target.env, "PLUGKIT_DATABASE_URL": url})
                    print(f"[{target.name}] again on PostgreSQL (no load)", flush=True)
                    figures = run_plugin(variant, args, Path(root), with_load=False)
                    results["plugins"][f"{target.name} (PostgreSQL)"] = figures
        for name in args.plugins if "auth" in args.parts else ():
            kind = AUTH_PASS[name]
            print(f"[{name}] fuzzing {args.cases} cases under {kind}", flush=True)
            figures: dict[str, Any] = {"problems": []}
            try:
                with authenticated(TARGETS[name], kind, Path(root) / f"{name}-{kind}") as (server, headers):
                    fuzzed = fuzz(server.base_url, args.cases, headers=headers, seed=args.seed)
                figures["fuzz"] = asdict(fuzzed)
                if fuzzed.server_errors or fuzzed.spec_violations:
                    figures["problems"].append(
                        f"fuzz: {fuzzed.server_errors} server errors, {fuzzed.spec_violations} spec violations"
                    )
            except Exception as exc:
                traceback.print_exc()
                figures["problems"].append(f"auth pass: the run failed: {exc!r}")
            results["plugins"][f"{name} ({kind})"] = figures
    results["seconds"] = round(time.monotonic() - started, 1)
    problems = [f"{n}: {p}" for n, r in results["plugins"].items() for p in r["problems"]]
    results["ok"] = not problems
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"results: {args.out}")
    if problems:
        print("\n".join(["problems:", *problems]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
