"""A diagnosis for the GPU ingest (#16): the CPU a chunk worker spends on each chunk, this tree against a baseline.

    python bench/chunk_worker.py [--baseline REV] [--rounds 5]

On a GPU the chunk pool's workers take most of the ingest's CPU (bench/results/ingest_host.json), so their CPU per
chunk sets how many cores a given ingest rate needs. Each run is a process of its own that loads one worker
(`chunk_pool._Worker`, MiniLM's tokenizer, chunks of 200 tokens with 20 of overlap) and chunks and tokenises all of
SciFact's abstracts three times, keeping the least CPU time (process_time); the baseline's code (`git archive REV`)
and this tree's run alternately, each first in every other round. Results: bench/results/chunk_worker.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "chunk_worker.json"


def worker(corpus: Path) -> dict[str, Any]:
    from plugkit.plugins.retrieval.chunk_pool import TokenSpec, _Worker
    from plugkit.plugins.retrieval.embeddings.local import model_dir

    with corpus.open(encoding="utf-8") as fh:
        texts = [f"{row.get('title', '')}\n{row['text']}".strip() for row in map(json.loads, fh)]
    files = model_dir() / "tokenizer.json"
    chunker = _Worker(str(files), TokenSpec(files, 256), 200, 20)
    chunker.prepare(texts[:100])
    best, chunks = float("inf"), 0
    for _ in range(3):
        started = time.process_time()
        chunks = len(chunker.prepare(texts)[2])
        best = min(best, time.process_time() - started)
    import plugkit

    ran = str(Path(plugkit.__file__).parents[1])  # which tree's code this was
    return {"chunks": chunks, "cpu_us_per_chunk": best / chunks * 1e6, "plugkit": ran}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--baseline", default="f109fd5", help="the commit whose worker is the starting figure")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    from store_write import baseline_tree, run_script

    corpus = args.data / "corpus.jsonl"
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "this_tree": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = [("baseline", baseline_tree(args.baseline, Path(tmp) / "baseline")), ("this_tree", ROOT / "src")]
        for n in range(args.rounds):
            for name, src in trees if n % 2 == 0 else trees[::-1]:
                run = run_script(__file__, [src], ["--worker", str(corpus)])
                if Path(run.pop("plugkit")).resolve() != src.resolve():
                    raise SystemExit(f"a run meant for {src} imported plugkit from elsewhere")
                runs[name].append(run)
                print(f"round {n + 1} {name}: {json.dumps(runs[name][-1])}", flush=True)
    base = [r["cpu_us_per_chunk"] for r in runs["baseline"]]
    this = [r["cpu_us_per_chunk"] for r in runs["this_tree"]]
    ratios = [t / b for t, b in zip(this, base, strict=True)]
    results = {
        "what": __doc__.split("\n\n")[2].replace("\n", " ") if __doc__ else "",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "baseline_commit": args.baseline,
        "chunks": runs["this_tree"][0]["chunks"],
        "rounds": args.rounds,
        "cpu_us_per_chunk": {
            name: {"median": round(statistics.median(v), 1), "min": round(min(v), 1), "max": round(max(v), 1)}
            for name, v in (("baseline", base), ("this_tree", this))
        },
        "this_tree_over_baseline_same_round": {
            "median": round(statistics.median(ratios), 3),
            "min": round(min(ratios), 3),
            "max": round(max(ratios), 3),
        },
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("cpu_us_per_chunk", "this_tree_over_baseline_same_round")}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
