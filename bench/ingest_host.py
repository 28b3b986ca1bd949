"""A diagnosis for the GPU ingest (#16) that runs without a GPU: `plugkit ingest` as it runs on a CUDA embedder, with
the model's forward pass made instant, this tree against a baseline commit, side by side.

    python bench/ingest_host.py [--baseline REV] [--repeat 4] [--rounds 3]

On a GPU the model is fast (39,749 chunks/s alone on an H200) and the ingest is bound by what the host does around it:
reading the documents, chunking and tokenising them (the chunk pool), building and writing the rows (SQLite, the
vector index) and catching the keyword index up (its own process). Each run here is the command's own path
(`_local_target`, `_run`: the GPU's writes of PLUGKIT_EMBED_BATCH_SIZE documents, its writes in flight, its number of
chunk workers: all cores but six, at least one) over SciFact written `--repeat` times under distinct ids, through the
store's close (everything searchable), with `pipeline.encode_ids` answering fixed unit vectors at once. It records
chunks/s and the CPU seconds per chunk of each process: the ingesting process (whose Python, one GIL, bounds a GPU
ingest once the other stages have cores), the chunk workers and the keyword process. On this two-core machine the one
chunk worker bounds the chunks/s; the CPU per chunk of each process is the figure that carries over to a machine with
more cores. Results: bench/results/ingest_host.json.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ingest_host.json"
GPU_BATCH = 2048


def worker(corpus: Path, repeat: int) -> dict[str, Any]:
    """One run against whatever plugkit is first on sys.path (this tree's, or the baseline's)."""
    import numpy as np
    import psutil
    from gpu import write_corpus
    from rich.console import Console

    from plugkit.cli import ingest as ingest_cmd
    from plugkit.plugins.retrieval.embeddings import pipeline
    from plugkit.plugins.retrieval.ingest import iter_documents

    vectors = np.random.default_rng(0).normal(size=(GPU_BATCH, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def instant(_model: Any, _flat: Any, lengths: Any, *_args: Any, **_kwargs: Any) -> Any:
        return np.resize(vectors, (len(lengths), vectors.shape[1]))

    pipeline.encode_ids = instant  # type: ignore[assignment]
    ingest_cmd._on_gpu = lambda _embedder: True  # type: ignore[assignment]

    def cpu() -> dict[str, float]:
        me = psutil.Process()
        seconds = {"ingesting_process": sum(me.cpu_times()[:2]), "chunk_workers": 0.0, "keyword_process": 0.0}
        for child in me.children(recursive=True):
            try:
                key = "keyword_process" if "keyword_process" in " ".join(child.cmdline()) else "chunk_workers"
                seconds[key] += sum(child.cpu_times()[:2])
            except psutil.Error:
                pass
        return seconds

    async def run(work: Path) -> dict[str, Any]:
        warm, documents = work / "warm.jsonl", work / "corpus.jsonl"
        write_corpus(corpus, warm, 1, "warm-", 2 * GPU_BATCH)
        count = write_corpus(corpus, documents, repeat, "", None)
        console = Console(file=io.StringIO())
        send, close, _listing, _delete, pace = await ingest_cmd._local_target(work / "data")
        await ingest_cmd._run(list(iter_documents([warm])), send, pace.per_write, console, pace.in_flight)
        # What the tree's command does: read the documents as the batches go (a generator), or all of them first.
        streams = "Iterable" in str(inspect.signature(ingest_cmd._run).parameters["items"].annotation)
        before, started = cpu(), time.perf_counter()
        items = iter_documents([documents]) if streams else list(iter_documents([documents]))
        ok, failed = await ingest_cmd._run(items, send, pace.per_write, console, pace.in_flight)
        acknowledged, at_ack = time.perf_counter() - started, cpu()  # the chunk workers end with the close
        await close()
        seconds, after = time.perf_counter() - started, cpu()
        after["chunk_workers"] = at_ack["chunk_workers"]
        assert (ok, failed) == (count, 0), (ok, failed)
        import sqlite3

        (db,) = (work / "data").rglob("retrieval.db")
        conn = sqlite3.connect(db)
        chunks = conn.execute("SELECT count(*) FROM chunks WHERE document_id NOT LIKE 'warm-%'").fetchone()[0]
        conn.close()
        return {
            "chunks": chunks,
            "seconds": seconds,
            "acknowledged_s": acknowledged,
            "documents_read_as_they_come": streams,
            "plugkit": str(Path(ingest_cmd.__file__).resolve().parents[2]),  # which tree's code ran
            "per_write": pace.per_write,
            "in_flight": pace.in_flight,
            "cpu_us_per_chunk": {k: (after[k] - before[k]) / chunks * 1e6 for k in after},
        }

    os.environ["PLUGKIT_EMBED_BATCH_SIZE"] = str(GPU_BATCH)
    with tempfile.TemporaryDirectory() as work:
        os.environ.setdefault("PLUGKIT_MODEL_CACHE_DIR", str(Path(work) / "models"))
        return asyncio.run(run(Path(work)))


def run_one(src: Path, corpus: Path, repeat: int) -> dict[str, Any]:
    from store_write import run_script

    result = run_script(__file__, [src, ROOT / "bench"], ["--worker", "--corpus", str(corpus), "--repeat", str(repeat)])
    if Path(result.pop("plugkit")) != src.resolve():
        raise SystemExit(f"a run meant for {src} imported plugkit from elsewhere")
    result["load_avg_1m"] = round(result["load_avg_1m"], 2)
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(values: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(values)), "min": round(min(values)), "max": round(max(values))}

    return {
        "chunks_per_s_through_close": spread([r["chunks"] / r["seconds"] for r in runs]),
        "chunks_per_s_to_last_write": spread([r["chunks"] / r["acknowledged_s"] for r in runs]),
        "close_ms": spread([1000 * (r["seconds"] - r["acknowledged_s"]) for r in runs]),  # last write to searchable
        "cpu_us_per_chunk": {
            key: spread([r["cpu_us_per_chunk"][key] for r in runs]) for key in runs[0]["cpu_us_per_chunk"]
        },
        "runs": [
            {
                "seconds": round(r["seconds"], 2),
                "acknowledged_s": round(r["acknowledged_s"], 2),
                "documents_read_as_they_come": r["documents_read_as_they_come"],
                "cpu_us_per_chunk": {k: round(v, 1) for k, v in r["cpu_us_per_chunk"].items()},
                "load_avg_1m": r["load_avg_1m"],
            }
            for r in runs
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default="f109fd5", help="the commit whose code is the starting figure")
    parser.add_argument(
        "--repeat", type=int, default=3, help="copies of SciFact in each run (3: the store stays under the IVF index)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.corpus, args.repeat)))
        return
    from store_write import baseline_tree

    corpus = args.data / "corpus.jsonl"
    trees = {"baseline": Path(), "this_tree": ROOT / "src"}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        trees["baseline"] = baseline_tree(args.baseline, Path(tmp) / "baseline")
        for n in range(args.rounds):
            order = list(trees.items())
            for name, src in order if n % 2 == 0 else order[::-1]:  # each tree first in every other round
                runs[name].append(run_one(src, corpus, args.repeat))
                print(f"round {n + 1} {name}: {json.dumps(runs[name][-1])}", flush=True)
    first = runs["this_tree"][0]
    results = {
        "what": __doc__.split("\n\n")[2] if __doc__ else "",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "baseline_commit": args.baseline,
        "chunks": first["chunks"],
        "documents_per_write": first["per_write"],
        "writes_in_flight": first["in_flight"],
        "rounds": args.rounds,
        "note": args.note,
        "baseline": summary(runs["baseline"]),
        "this_tree": summary(runs["this_tree"]),
    }
    if RESULTS.exists():  # the runs before this one stay, newest first
        before = json.loads(RESULTS.read_text())
        results["earlier_runs"] = [{k: v for k, v in before.items() if k != "earlier_runs"}]
        results["earlier_runs"] += before.get("earlier_runs", [])
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for name in trees:
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "runs"}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
