"""A diagnosis for the GPU ingest (#16): the keyword index's catch-up beside a busy Python thread.

The embedded store catches its tantivy index up in a background thread of the writing process. This indexes the same
SciFact abstracts with the store's schema and analyzer three ways and times each: alone; in a thread while another
thread of the process runs Python without pause (as the ingest command's one process does on a GPU, its GIL held
about 70% of the run); and in a process of its own (spawned) while the same busy thread runs. It also records how
fast the busy thread ran in each case. Results: bench/results/keyword_gil.json.

    python bench/keyword_gil.py [--documents 3000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import tantivy  # noqa: E402

from plugkit.plugins.retrieval.stores.keyword_index import ANALYZER, WRITER_HEAP, _schema, analyzer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "keyword_gil.json"


def texts_of(corpus: Path, documents: int) -> list[str]:
    texts = []
    with corpus.open() as f:
        for line in f:
            record = json.loads(line)
            texts.append(f"{record.get('title', '')}\n{record['text']}")
            if len(texts) == documents:
                break
    return texts


def index(texts: list[str]) -> float:
    """Seconds to add `texts` to a new index (one indexing thread, the store's small catch-up writer) and commit."""
    with tempfile.TemporaryDirectory() as directory:
        found = tantivy.Index(_schema(), path=directory)
        found.register_tokenizer(ANALYZER, analyzer())
        writer = found.writer(WRITER_HEAP, 1)
        started = time.perf_counter()
        for rowid, text in enumerate(texts):
            writer.add_document(tantivy.Document(rowid=rowid, text=text))
        writer.commit()
        writer.wait_merging_threads()
        return time.perf_counter() - started


def beside_busy_thread(run: Callable[[], float]) -> dict[str, Any]:
    """`run` while another thread counts in Python; the seconds it took and the busy thread's pace."""
    stop, counted = threading.Event(), []

    def busy() -> None:
        n = 0
        while not stop.is_set():
            for _ in range(1000):
                n += 1
        counted.append(n)

    thread = threading.Thread(target=busy)
    started = time.perf_counter()
    thread.start()
    seconds = run()
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    return {"index_s": round(seconds, 3), "busy_thread_m_steps_per_s": round(counted[0] / elapsed / 1e6, 2)}


def busy_alone(seconds: float = 2.0) -> float:
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            n += 1
    return round(n / seconds / 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--documents", type=int, default=3000)
    args = parser.parse_args()
    texts = texts_of(args.data / "corpus.jsonl", args.documents)
    load = [round(x, 2) for x in os.getloadavg()]
    alone = index(texts)
    in_thread = beside_busy_thread(lambda: index(texts))
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        pool.apply(index, (texts[:10],))  # started and imported before the clock runs
        in_process = beside_busy_thread(lambda: pool.apply(index, (texts,)))
    result = {
        "what": "tantivy indexing of SciFact abstracts with the embedded store's schema and analyzer (one indexing "
        "thread, the catch-up's writer), alone, in a thread beside a thread running Python without pause, and in a "
        "spawned process beside the same busy thread",
        "documents": len(texts),
        "tantivy": tantivy.__version__ if hasattr(tantivy, "__version__") else "0.27",
        "python": sys.version.split()[0],
        "switch_interval_s": sys.getswitchinterval(),
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "alone_index_s": round(alone, 3),
        "busy_thread_alone_m_steps_per_s": busy_alone(),
        "in_a_thread_beside_busy_python": in_thread,
        "in_its_own_process_beside_busy_python": in_process,
        "slowdown_in_thread": round(in_thread["index_s"] / alone, 1),
        "reading": "each add_document lets the GIL go and must win it back from the busy thread, which keeps it for "
        "the switch interval (5 ms): the catch-up thread crawls at about one document per interval (the GIL convoy "
        "effect), while in a process of its own it runs at its own pace (the busy thread then shares this "
        "machine's two cores with it, not its GIL)",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
