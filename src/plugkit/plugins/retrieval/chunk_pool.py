"""Chunking and tokenising documents in worker processes, for an embedder fed faster than one core can chunk (a GPU).

Each worker chunks its documents with the chunker's tokenizer and hands back, with the chunks, the token ids the
model reads for each chunk (special tokens and truncation as the model's tokenizer applies them): taken from the one
tokenisation of the document where the chunk's ends fall between words and the two tokenizers are the same file,
else by tokenising the chunk's text with the model's tokenizer. Either way the ids equal what tokenising the chunk's
text gives (tests/plugins/retrieval/test_chunk_pool.py), so the vectors equal those of the text path. Only the
chunker, `tokenizers` and numpy are imported in a worker; workers are spawned (never forked from a process holding a
CUDA context).
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugkit.plugins.retrieval.chunking import Chunk, HFTokenizer, chunk_token_ids

GROUP = 64  # documents per task handed to a worker


@dataclass(frozen=True)
class TokenSpec:
    """What the model's tokenizer is: its tokenizer.json and the tokens it reads at most (special tokens included)."""

    tokenizer_file: Path
    max_length: int


@dataclass
class Prepared:
    """Documents chunked and tokenised: each document's chunks, and every chunk's token ids end to end (int32) with
    each chunk's length, in the chunks' order."""

    chunks: list[list[Chunk]]
    flat: np.ndarray
    lengths: np.ndarray


class _Worker:
    """The state of one worker process: the chunker's tokenizer, the model's, and how the model wraps a text."""

    def __init__(self, chunker_file: str, spec: TokenSpec, chunk_tokens: int, overlap: int) -> None:
        from plugkit.plugins.retrieval.embeddings.pipeline import fast_tokenizer

        self.chunker = HFTokenizer(Path(chunker_file))
        self.model = fast_tokenizer(spec.tokenizer_file.parent, spec.max_length)
        self.model_file = spec.tokenizer_file
        self.chunk_tokens, self.overlap, self.max_length = chunk_tokens, overlap, spec.max_length
        self.prefix: list[int] | None
        self.suffix: list[int] | None
        self.prefix, self.suffix = self._wrapping(Path(chunker_file))

    def _wrapping(self, chunker_file: Path) -> tuple[list[int], list[int]] | tuple[None, None]:
        """The special ids the model's tokenizer puts before and after a text's own, when the chunker's tokenizer is
        the same file and wraps a probe that way; else (None, None): every chunk's text is then tokenised."""
        if _digest(chunker_file) != _digest(self.model_file):
            return None, None
        probe = "Probe text, two words."
        plain = self.chunker.encode(probe).ids
        full = self.model.encode(probe).ids
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
        return None, None

    def prepare(self, texts: list[str]) -> tuple[list[list[Chunk]], np.ndarray, np.ndarray]:
        chunks: list[list[Chunk]] = []
        ids: list[list[int] | None] = []
        for text in texts:
            pairs = chunk_token_ids(text, self.chunker, self.chunk_tokens, self.overlap)
            chunks.append([chunk for chunk, _ in pairs])
            ids += [self._wrap(own) if self.prefix is not None and own is not None else None for _, own in pairs]
        retokenise = [i for i, own in enumerate(ids) if own is None]
        if retokenise:
            flat_chunks = [chunk for document in chunks for chunk in document]
            encodings = self.model.encode_batch([flat_chunks[i].text for i in retokenise])
            for i, encoding in zip(retokenise, encodings, strict=True):
                ids[i] = encoding.ids
        lengths = np.fromiter((len(own or ()) for own in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((t for own in ids for t in own or ()), dtype=np.int32, count=int(lengths.sum()))
        return chunks, flat, lengths

    def _wrap(self, own: list[int]) -> list[int]:
        assert self.prefix is not None and self.suffix is not None
        room = self.max_length - len(self.prefix) - len(self.suffix)
        return [*self.prefix, *own[:room], *self.suffix]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_worker: _Worker | None = None


def _init(chunker_file: str, spec: TokenSpec, chunk_tokens: int, overlap: int) -> None:
    global _worker
    _worker = _Worker(chunker_file, spec, chunk_tokens, overlap)


def _prepare(texts: list[str]) -> tuple[list[list[Chunk]], np.ndarray, np.ndarray]:
    assert _worker is not None
    return _worker.prepare(texts)


class ChunkPool:
    """`workers` processes that chunk documents as `chunk_text` does and tokenise the chunks for the model of `spec`.
    The processes start on first use."""

    def __init__(self, chunker: HFTokenizer, spec: TokenSpec, chunk_tokens: int, overlap: int, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._initargs = (str(chunker.path), spec, chunk_tokens, overlap)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=self._initargs,
            )
        return self._pool

    async def prepare(self, texts: list[str]) -> Prepared:
        """The chunks and token ids of `texts`, in groups of GROUP documents over the workers."""
        pool = self._executor()
        loop = asyncio.get_running_loop()
        parts: list[Any] = await asyncio.gather(
            *(loop.run_in_executor(pool, _prepare, texts[i : i + GROUP]) for i in range(0, len(texts), GROUP))
        )
        chunks = [document for part in parts for document in part[0]]
        if not parts:
            return Prepared([], np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64))
        return Prepared(chunks, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
