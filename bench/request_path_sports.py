"""The sports rows of bench/request_path.py, measured alone, with the code before a change side by side.

bench/request_path.py measures every plugin and rewrites its whole results file; this runs its sports labels only
(`sports`: answer cache on; `sports-uncached`: cache off, every request a query) the same way (one `plugkit serve
sports` worker and bench/bare_app.py pinned to core 0, wrk on core 1, rounds alternating the two), and adds:

- `sports-uncached-rows`: /stats and /season_averages for players the bundled sample holds. The request-path cases
  ask for players 237 and 115, ids the sample's hashed player ids never take, so those answers are empty.
- `--baseline REV`: the same sports-uncached and sports-uncached-rows cases served by the code at git revision REV
  (its tree exported to a temporary folder), in the same run, so that before and after share the machine's load.

Results: bench/results/request_path_sports.json (with the load average at start and end: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "src")]

import request_path  # noqa: E402
from request_path import CASES, SERVED, Case, measure_plugin  # noqa: E402

from plugkit.plugins.sports.importer import player_id_for  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "request_path_sports.json"
ROWS = "sports-uncached-rows"
LEBRON, DAVIS = player_id_for("LeBron James"), player_id_for("Anthony Davis")
EXTRA = (
    Case(ROWS, "GET", f"/stats?player_ids[]={LEBRON}&limit=25"),
    Case(ROWS, "GET", f"/season_averages?season=2023&player_ids[]={LEBRON}&player_ids[]={DAVIS}"),
)


def measure_at(revision: str, label: str, args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """`label`'s cases served by the tree at `revision` (its bench/bare_app.py too), from a data directory of its
    own (a newer plugkit's migrated dataset is one an older refuses)."""
    tree, data = root / f"tree-{revision}", root / f"data-{revision}"
    if not tree.exists():
        tree.mkdir()
        data.mkdir()
        archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    here = request_path.ROOT
    request_path.ROOT = tree  # plugkit_server and the bare app run from request_path.ROOT
    try:
        rows = measure_plugin(label, args, data)
    finally:
        request_path.ROOT = here
    for row in rows:
        row["revision"] = revision
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=4, help="seconds of load per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plugins", default=f"sports,sports-uncached,{ROWS}")
    parser.add_argument("--baseline", help="a git revision whose sports-uncached cases run too, for before/after")
    args = parser.parse_args()
    request_path.CASES = (*CASES, *EXTRA)
    SERVED[ROWS] = SERVED["sports-uncached"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    started = time.time()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "how": "bench/request_path.py's measurement (real `plugkit serve sports`, one worker, and bench/bare_app.py "
        "with the same payloads from memory, both pinned to core 0; `taskset -c 1 wrk -t1 "
        f"-c{args.connections} -d{args.duration}s`, {args.rounds} rounds alternating the two); the machine "
        "is shared with other engineers' tests and benchmarks, so compare ratios within one run",
        "revision": head,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "goal": {"read": f">= {request_path.READ_GOAL}x"},
        "routes": [],
    }
    with tempfile.TemporaryDirectory(prefix="plugkit-bench-sports-") as tmp:
        root = Path(tmp)
        for label in args.plugins.split(","):
            result["routes"].extend(measure_plugin(label, args, root))
        if args.baseline:
            result["baseline"] = [
                row for label in ("sports-uncached", ROWS) for row in measure_at(args.baseline, label, args, root)
            ]
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.time() - started)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| operation | plugkit req/s (min-max) | bare FastAPI req/s (min-max) | ratio | per CPU second |")
    print("|---|---|---|---|---|")
    for row in result["routes"] + result.get("baseline", []):
        mine, peer = row["plugkit"], row["bare_fastapi"]
        label = row["plugin"] + (f" @{row['revision'][:7]}" if "revision" in row else "")
        print(
            f"| {label} `{row['operation']}` | {mine['requests_per_s_median']:,.0f} "
            f"({mine['requests_per_s_min_max'][0]:,.0f}-{mine['requests_per_s_min_max'][1]:,.0f}) "
            f"| {peer['requests_per_s_median']:,.0f} "
            f"({peer['requests_per_s_min_max'][0]:,.0f}-{peer['requests_per_s_min_max'][1]:,.0f}) "
            f"| {row['ratio']:.2f}x | {row['ratio_per_cpu_second']}x |"
        )


if __name__ == "__main__":
    main()
