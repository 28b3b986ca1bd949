"""A diagnosis for the GPU ingest (#16): how fast the chunk pool hands chunks to a process that is busy running Python.

The ingest command's one process runs Python most of the time on a GPU (the store's rows, the documents, the model's
feeding), and the chunk pool's answers must reach it. This times, side by side in one run, two ways of running the
same workers (`chunk_pool._Worker`, SciFact abstracts, chunks of 200 tokens with 20 of overlap):

- `executor`: concurrent.futures' ProcessPoolExecutor (spawned workers; its feeder and result threads move the tasks
  and answers), what the pool was before;
- `pipes`: plugkit's ChunkPool now (plain subprocesses on pipes, the answers read by the event loop itself);

each alone and while another thread of the process counts in Python without pause, in two cases: `real`, one worker
chunking for real (this machine has two cores: one for it, one for the process), and `instant`, workers that answer
from memory a group they have seen (bench/chunk_pool_instant.py), so the figure is the most the hand-over itself can
carry, whatever the number of workers. Rounds alternate the two ways; medians and spreads are recorded in
bench/results/chunk_pool.json.

    python bench/chunk_pool.py [--documents 2048] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "bench"), os.environ.get("PYTHONPATH")) if p)

import chunk_pool_instant  # noqa: E402
from keyword_gil import beside_busy_thread, busy_alone, texts_of  # noqa: E402

from plugkit.plugins.retrieval.chunk_pool import GROUP, ChunkPool, TokenSpec  # noqa: E402
from plugkit.plugins.retrieval.chunking import minilm_tokenizer  # noqa: E402
from plugkit.plugins.retrieval.embeddings.local import model_dir  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "chunk_pool.json"
CHUNK_TOKENS, OVERLAP = 200, 20


class InstantPool(ChunkPool):
    """The pool with workers that answer a group they have seen from memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool.module = "chunk_pool_instant"  # its processes run that module's main


class ExecutorPool:
    """The same workers under ProcessPoolExecutor, as the pool ran them before."""

    def __init__(self, spec: TokenSpec, workers: int, instant: bool) -> None:
        arguments = (str(minilm_tokenizer().path), spec, CHUNK_TOKENS, OVERLAP)
        self.task = chunk_pool_instant.prepare_cached if instant else chunk_pool_instant.prepare
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=chunk_pool_instant.init_executor,
            initargs=arguments,
        )

    async def prepare(self, texts: list[str]) -> int:
        loop = asyncio.get_running_loop()
        parts = await asyncio.gather(
            *(loop.run_in_executor(self.pool, self.task, texts[i : i + GROUP]) for i in range(0, len(texts), GROUP))
        )
        return sum(len(part[2]) for part in parts)

    def close(self) -> None:
        self.pool.shutdown()


class PipesPool:
    def __init__(self, spec: TokenSpec, workers: int, instant: bool) -> None:
        kind = InstantPool if instant else ChunkPool
        self.pool = kind(minilm_tokenizer(), spec, CHUNK_TOKENS, OVERLAP, workers)

    async def prepare(self, texts: list[str]) -> int:
        return len((await self.pool.prepare(texts)).lengths)

    def close(self) -> None:
        self.pool.close()


def timed(loop: asyncio.AbstractEventLoop, pool: Any, texts: list[str], passes: int) -> Callable[[], float]:
    counted: list[int] = []

    def run() -> float:
        started = time.perf_counter()
        counted.append(sum(loop.run_until_complete(pool.prepare(texts)) for _ in range(passes)))
        return time.perf_counter() - started

    run.counted = counted  # type: ignore[attr-defined]
    return run


def measure(kind: type, texts: list[str], workers: int, instant: bool, passes: int) -> dict[str, float]:
    """Chunks per second alone and beside the busy thread, for one pool of `kind`."""
    spec = TokenSpec(model_dir() / "tokenizer.json", 256)
    loop = asyncio.new_event_loop()
    pool = kind(spec, workers, instant)
    try:
        for _ in range(4 if instant else 1):  # started, and (instant) every group seen by every worker
            loop.run_until_complete(pool.prepare(texts))
        run = timed(loop, pool, texts, passes)
        alone = run()
        beside = beside_busy_thread(run)
        chunks = run.counted[0]  # type: ignore[attr-defined]
        return {
            "alone_chunks_per_s": round(chunks / alone),
            "beside_busy_chunks_per_s": round(chunks / beside["index_s"]),
            "busy_thread_m_steps_per_s": beside["busy_thread_m_steps_per_s"],
        }
    finally:
        pool.close()
        loop.close()


def summary(rounds: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--documents", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    texts = texts_of(args.data / "corpus.jsonl", args.documents)
    load = [round(x, 2) for x in os.getloadavg()]
    cases = {"real_1_worker": (1, False, 1), "instant_2_workers": (2, True, 4)}
    found: dict[str, dict[str, list[dict[str, float]]]] = {c: {"executor": [], "pipes": []} for c in cases}
    for n in range(args.rounds):
        for case, (workers, instant, passes) in cases.items():
            for name, kind in (("executor", ExecutorPool), ("pipes", PipesPool)):
                found[case][name].append(measure(kind, texts, workers, instant, passes))
        print(f"round {n + 1}: {json.dumps({c: {k: v[-1] for k, v in r.items()} for c, r in found.items()})}")
    result = {
        "what": __doc__.split("\n\n")[1] if __doc__ else "",
        "documents": len(texts),
        "documents_per_task": GROUP,
        "python": sys.version.split()[0],
        "switch_interval_s": sys.getswitchinterval(),
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "busy_thread_alone_m_steps_per_s": busy_alone(),
        "rounds": args.rounds,
        "cases": {case: {name: summary(rounds) for name, rounds in by.items()} for case, by in found.items()},
        "runs": found,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["cases"], indent=2))


if __name__ == "__main__":
    main()
