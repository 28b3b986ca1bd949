"""The embedded store's write path in one thread: chunks/s of `replace_documents`, this tree against a baseline commit.

    python bench/store_write.py [--baseline REV] [--repeats 3] [--calls 5] [--docs-per-call 1024] [--note TEXT]

SciFact abstracts (title + text) are chunked once by plugkit's chunker (200 tokens, overlap 20, the defaults) outside
the timed part; each chunk gets a random unit 384-d vector (a list of floats, as the embedders return them). A run
opens an empty store, then times `--calls` calls of `replace_documents` of `--docs-per-call` documents each
(`write`), then one keyword search, which brings the keyword index up to date first (`settle`: work a write may
leave to the next search). Each run is its own process, so the baseline's code (the store's package from `git
archive REV`) and this tree's run side by side, alternately, on the same data; this tree runs three ways: as it is
(the keyword index caught up by the store's background thread), with that catch-up left to the search in the same
thread (the whole work on one core), and with numpy rows as vectors. Figures are chunks per second of the writing
thread (wall clock) and chunks per CPU-second of the whole process; the machine is shared, so the load average is
recorded beside them. Writes bench/results/store_write.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "store_write.json"
DIMENSION = 384


def prepare(data: Path, documents: int, out: Path) -> int:
    """Chunk the first `documents` SciFact abstracts as the Retriever does; write [[id, [texts]]] to `out`."""
    sys.path.insert(0, str(ROOT / "src"))
    from plugkit.plugins.retrieval.chunking import chunk_text, minilm_tokenizer

    tokenizer = minilm_tokenizer()
    rows = []
    with open(data / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            text = f"{row.get('title', '')}\n{row['text']}".strip()
            rows.append([row["_id"], [c.text for c in chunk_text(text, tokenizer, 200, 20)]])
            if len(rows) == documents:
                break
    out.write_text(json.dumps(rows))
    return sum(len(texts) for _, texts in rows)


def worker(chunks_file: Path, calls: int, per_call: int, one_thread: bool, arrays: bool) -> dict[str, Any]:
    """One run against whatever plugkit is first on sys.path (this tree's, or the baseline's). `one_thread`: the
    keyword index is not caught up in the background but by the search after the writes, in the same thread.
    `arrays`: each chunk's vector is a float32 numpy row instead of a list of floats."""
    import numpy as np

    from plugkit.plugins.retrieval.chunking import chunk_id
    from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata, DocumentMetadata
    from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, SearchRequest, StoreInfo
    from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore

    rows = json.loads(chunks_file.read_text())
    rng = np.random.default_rng(7)
    batches: list[list[DocumentRecord]] = []
    for call in range(calls):
        records = []
        for document_id, texts in rows[call * per_call : (call + 1) * per_call]:
            # As Retriever.chunk_document: the chunks of a document share one metadata object.
            metadata = DocumentChunkMetadata(**DocumentMetadata(source="file").model_dump(), document_id=document_id)
            vectors = rng.standard_normal((len(texts), DIMENSION)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            chunks = [
                ChunkRecord.of(DocumentChunk(id=chunk_id(document_id, n), text=t, metadata=metadata), v)
                for n, (t, v) in enumerate(zip(texts, list(vectors) if arrays else vectors.tolist(), strict=True))
            ]
            records.append(DocumentRecord(document_id, chunks))
        batches.append(records)
    total = sum(len(d.chunks) for b in batches for d in b)

    def cpu_now() -> float:
        """CPU seconds of this process and of its keyword process, where the store has one (since 9992d9c)."""
        try:
            from plugkit.plugins.retrieval.stores.keyword_process import background_pid
        except ImportError:
            return time.process_time()
        pid = background_pid()
        if pid is None:
            return time.process_time()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return time.process_time() + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def run(directory: Path) -> dict[str, Any]:
        store = EmbeddedStore(directory)
        await store.open(StoreInfo("bench-model", DIMENSION))
        if one_thread:
            store._keywords_behind = lambda: None  # type: ignore[method-assign]
        per_call = []
        start, cpu = time.perf_counter(), cpu_now()
        for batch in batches:
            t0 = time.perf_counter()
            await store.replace_documents(batch)
            per_call.append(time.perf_counter() - t0)
        write, write_cpu = time.perf_counter() - start, cpu_now() - cpu
        t0, cpu = time.perf_counter(), cpu_now()
        hits = await store.search(SearchRequest(text="cerebral white matter", embedding=None, top_k=3, mode="keyword"))
        settle, settle_cpu = time.perf_counter() - t0, cpu_now() - cpu
        assert hits, "the keyword index must find just-written chunks"
        assert await store.count() == total
        await store.close()
        return {
            "write_s": write,
            "settle_s": settle,
            "write_cpu_s": write_cpu,
            "settle_cpu_s": settle_cpu,
            "per_call_s": per_call,
        }

    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(Path(tmp) / "store"))
    result["chunks"] = total
    result["module"] = sys.modules[EmbeddedStore.__module__].__file__
    return result


def baseline_tree(rev: str, into: Path) -> Path:
    """The `src` folder of `rev`, extracted into `into`."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_script(script: str, paths: list[Path], args: list[str]) -> dict[str, Any]:
    """Run `script args` in a process of its own with `paths` first on its import path; the JSON object its last line
    printed, with the load average after it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    out = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"a run failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_avg_1m"] = os.getloadavg()[0]
    return result


def run_one(src: Path, chunks_file: Path, calls: int, per_call: int, flags: list[str]) -> dict[str, Any]:
    args = ["--worker", str(chunks_file), "--calls", str(calls), "--docs-per-call", str(per_call)]
    return run_script(__file__, [src], [*args, *flags])


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    chunks = runs[0]["chunks"]
    write = [chunks / r["write_s"] for r in runs]
    settled = [chunks / (r["write_s"] + r["settle_s"]) for r in runs]
    return {
        "write_chunks_per_s": {
            "median": round(statistics.median(write)),
            "min": round(min(write)),
            "max": round(max(write)),
        },
        "write_and_settle_chunks_per_s": {
            "median": round(statistics.median(settled)),
            "min": round(min(settled)),
            "max": round(max(settled)),
        },
        "settle_s_median": round(statistics.median(r["settle_s"] for r in runs), 3),
        # CPU seconds of the whole process (every thread, and its keyword process) over the writes and the settling
        # search: chunks per CPU-second is the per-core figure least disturbed by the other work on the machine
        # (fsync waits excluded).
        "chunks_per_cpu_s_write_and_settle": round(
            statistics.median(chunks / (r["write_cpu_s"] + r["settle_cpu_s"]) for r in runs)
        ),
        "chunks_per_cpu_s_write": round(statistics.median(chunks / r["write_cpu_s"] for r in runs)),
        "runs": [
            {
                "write_s": round(r["write_s"], 3),
                "settle_s": round(r["settle_s"], 3),
                "write_cpu_s": round(r["write_cpu_s"], 3),
                "settle_cpu_s": round(r["settle_cpu_s"], 3),
                "per_call_s": [round(x, 3) for x in r["per_call_s"]],
                "load_avg_1m": round(r["load_avg_1m"], 2),
            }
            for r in runs
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--baseline", default="53c957f", help="the commit whose store is the starting figure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--docs-per-call", type=int, default=1024)
    parser.add_argument("--note", default="")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--one-thread", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arrays", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.calls, args.docs_per_call, args.one_thread, args.arrays)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        chunks_file = Path(tmp) / "chunks.json"
        chunks = prepare(args.data, args.calls * args.docs_per_call, chunks_file)
        old_src = baseline_tree(args.baseline, Path(tmp) / "baseline")
        variants: dict[str, tuple[Path, list[str]]] = {
            "baseline": (old_src, []),
            "current": (ROOT / "src", []),
            "current_one_thread": (ROOT / "src", ["--one-thread"]),
            "current_array_vectors": (ROOT / "src", ["--arrays"]),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (src, flags) in variants.items():
                runs[name].append(run_one(src, chunks_file, args.calls, args.docs_per_call, flags))
                print(name, json.dumps(runs[name][-1]["write_s"]), file=sys.stderr)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    results = {
        "what": "EmbeddedStore.replace_documents in one thread: SciFact chunks, random unit 384-d vectors",
        "workload": {
            "documents": args.calls * args.docs_per_call,
            "chunks": chunks,
            "calls": args.calls,
            "documents_per_call": args.docs_per_call,
            "chunking": "plugkit chunk_text, 200 tokens, overlap 20 (untimed)",
        },
        "baseline_commit": args.baseline,
        "current_commit": head.strip() + (" + uncommitted changes" if _dirty() else ""),
        "baseline": summary(runs["baseline"]),
        "current": summary(runs["current"]),
        "current_one_thread": summary(runs["current_one_thread"]),
        "current_array_vectors": summary(runs["current_array_vectors"]),
        "variants": {
            "baseline": "the baseline commit's store (before 53c957f: the keyword index caught up inside each"
            " write; from then to 1409d6e: by a background thread of the writing process, rows by executemany)",
            "current": "this tree: the keyword index caught up by the store's keyword process (another core),"
            " chunk rows by multi-row INSERTs",
            "current_one_thread": "this tree with the background catch-up off: the writes, then the search catches"
            " the keyword index up in the same thread; write_and_settle is the whole work on one core",
            "current_array_vectors": "as current, each chunk's vector a float32 numpy row (as an embedder could hand"
            " them over) instead of a list of floats",
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": args.note
        or "write_chunks_per_s: chunks over the wall time of the writes, one thread writing (`current` also runs the"
        " store's background keyword catch-up, on another core; `current_one_thread` does all the work in the writing"
        " thread); write_and_settle adds the search that waits for the keyword index; chunks_per_cpu_s counts the CPU"
        " of every thread and of the keyword process. The variants' runs alternate; the machine (2 cores) is shared"
        " with other engineers' tests,"
        " so load_avg_1m is recorded per run",
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for name in runs:
        r = results[name]
        print(name, r["write_chunks_per_s"], r["write_and_settle_chunks_per_s"], r["chunks_per_cpu_s_write_and_settle"])


def _dirty() -> bool:
    status = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True).stdout
    return bool(status.strip())


if __name__ == "__main__":
    main()
