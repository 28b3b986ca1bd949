"""Where the time of one /upsert-file goes (issue 21, item 14): a 64 KB Markdown file and a 19-page PDF.

    python bench/upload.py

Each phase is the code /upsert-file runs, timed on its own: extraction (parsing.extract), chunking
(Retriever.chunk_document: the MiniLM tokenizer and sentence-aware cuts), embedding (LocalEmbedder at each
precision: fp32, int8, bf16, the default "auto" choice where the CPU has AMX/AVX-512 BF16), and the store write
(EmbeddedStore.replace_documents: SQLite, FTS5 and the vector index). Rounds alternate the precisions so that the
machine's load hits them alike; the fractions of an upload's time and the ratios between precisions are what this
busy shared machine can tell, absolute seconds less so. Results go to bench/results/upload.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.sample_files import markdown_bytes, pdf_bytes  # noqa: E402

from plugkit.plugins.retrieval.chunking import minilm_tokenizer  # noqa: E402
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder  # noqa: E402
from plugkit.plugins.retrieval.models import Document, DocumentMetadata  # noqa: E402
from plugkit.plugins.retrieval.parsing import extract  # noqa: E402
from plugkit.plugins.retrieval.service import Retriever  # noqa: E402
from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord  # noqa: E402
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore  # noqa: E402

ROUNDS = 2
PRECISIONS = ("fp32", "int8", "bf16")


async def one_upload(name: str, data: bytes, retriever: Retriever, embedder: LocalEmbedder) -> dict[str, float]:
    times: dict[str, float] = {}
    started = time.perf_counter()
    found = await asyncio.to_thread(extract, data, name)
    times["extract"] = time.perf_counter() - started
    started = time.perf_counter()
    document = Document(id=name, text=found.text, metadata=DocumentMetadata(source_id=name))
    chunks = await asyncio.to_thread(retriever.chunk_document, document, name)
    times["chunk"] = time.perf_counter() - started
    started = time.perf_counter()
    vectors = await embedder.embed_documents([c.text for c in chunks])
    times["embed"] = time.perf_counter() - started
    started = time.perf_counter()
    record = DocumentRecord(name, [ChunkRecord(c, v) for c, v in zip(chunks, vectors, strict=True)])
    await retriever.store.replace_documents([record])
    times["store"] = time.perf_counter() - started
    times["chunks"] = len(chunks)
    times["characters"] = len(found.text)
    return times


async def run() -> dict[str, Any]:
    files = {"markdown_64kb.md": markdown_bytes(64_000), "pdf_19_pages.pdf": pdf_bytes(19)}
    embedders = {p: LocalEmbedder(precision=p) for p in PRECISIONS}  # type: ignore[arg-type]
    for embedder in embedders.values():
        embedder.load()
    samples: dict[str, dict[str, list[dict[str, float]]]] = {n: {p: [] for p in PRECISIONS} for n in files}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(ROUNDS):
            for precision, embedder in embedders.items():
                store = EmbeddedStore(Path(tmp) / f"{precision}-{round_no}")
                retriever = Retriever(store, embedder, minilm_tokenizer())
                await retriever.open()
                for name, data in files.items():
                    samples[name][precision].append(await one_upload(name, data, retriever, embedder))
                    print(name, precision, samples[name][precision][-1], flush=True)
                await retriever.close()
    report: dict[str, Any] = {}
    for name, by_precision in samples.items():
        entry: dict[str, Any] = {"bytes": len(files[name])}
        for precision, runs in by_precision.items():
            phases = {k: statistics.median(r[k] for r in runs) for k in ("extract", "chunk", "embed", "store")}
            total = sum(phases.values())
            entry[precision] = {
                "seconds": {k: round(v, 3) for k, v in phases.items()},
                "total_s": round(total, 3),
                "total_min_max_s": [
                    round(min(sum(r[k] for k in phases) for r in runs), 3),
                    round(max(sum(r[k] for k in phases) for r in runs), 3),
                ],
                "fraction": {k: round(v / total, 3) for k, v in phases.items()},
                "chunks": int(runs[0]["chunks"]),
                "characters": int(runs[0]["characters"]),
            }
        entry["embed_speedup_bf16_over_fp32"] = round(
            entry["fp32"]["seconds"]["embed"] / entry["bf16"]["seconds"]["embed"], 2
        )
        report[name] = entry
    return report


def quiet_machine_bound(report: dict[str, Any]) -> dict[str, Any]:
    """What the embedding alone costs each file at the best bf16 rate bench/scale.py measured on this machine."""
    scale = json.loads((ROOT / "bench" / "results" / "scale.json").read_text())
    rate = float(scale["embed"]["chunks_per_s"]["local_bf16"])
    return {
        "bf16_chunks_per_s_from_scale_json": rate,
        "embed_seconds_at_that_rate": {n: round(e["bf16"]["chunks"] / rate, 3) for n, e in report.items()},
    }


def main() -> None:
    load = os.getloadavg()
    report = asyncio.run(run())
    bound = quiet_machine_bound(report)
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": [round(x, 1) for x in load],
        "note": (
            f"medians of {ROUNDS} rounds per precision, rounds interleaved; the load average (other engineers' test "
            "runs on the same 2 cores) makes absolute seconds many times what an idle machine gives: "
            "bench/results/scale.json measured 125.6 chunks/s for bf16 embedding on this machine when quieter."
        ),
        "files": report,
        "quiet_machine_bound": bound,
        "conclusion": (
            "embedding is 90-98% of an upload's time at every precision; extraction, chunking and the store write "
            "together are the rest. At the best bf16 rate measured here (quiet_machine_bound) the embedding alone "
            "takes longer than 0.5 s for the 64 KB Markdown file (115 chunks of 200 tokens) and the 19-page PDF "
            "(85 chunks) on this 2-core machine, so no change to plugkit's own code brings either under 0.5 s here; "
            "what would: fewer tokens embedded per upload (larger chunks do not help: the cost follows tokens), "
            "answering before the vectors exist (a change to the store contract: acknowledged writes are searchable "
            "today), or more cores (torch uses every core for one upload's batch)."
        ),
    }
    out = ROOT / "bench" / "results" / "upload.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
