"""Chunking and tokenising documents in worker processes, for an embedder fed faster than one core can chunk (a GPU).

Each worker chunks its documents with the chunker's tokenizer and hands back, with the chunks' texts, the token ids
the model reads for each chunk (special tokens and truncation as the model's tokenizer applies them): taken from the
one tokenisation of the document where the chunk's ends fall between words and the two tokenizers are the same file,
else by tokenising the chunk's text with the model's tokenizer. Either way the ids equal what tokenising the chunk's
text gives (tests/plugins/retrieval/test_chunk_pool.py), so the vectors equal those of the text path. Only the
chunker, `tokenizers` and numpy are imported in a worker.

The workers are plain subprocesses (`python -m plugkit.plugins.retrieval.chunk_pool`, never forked from a process
holding a CUDA context, and never running the caller's main script again as multiprocessing's spawn does), driven by a
`child_process.ProcessPool` from the event loop of the process that ingests: a group of documents one way, its chunks
the other (ProcessPoolExecutor capped the hand-over at 4,700-8,000 chunks/s beside a busy thread:
bench/chunk_pool.py).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from plugkit.plugins.retrieval.child_process import ProcessPool, serve
from plugkit.plugins.retrieval.chunking import Chunk, HFTokenizer, chunk_token_ids

GROUP = 128  # documents per task handed to a worker
QUEUED = 2  # tasks given to a worker at once: one it works on, one waiting in its pipe


class ChunkPoolError(RuntimeError):
    """A chunking process failed or ended; the message says how."""


@dataclass(frozen=True)
class TokenSpec:
    """What the model's tokenizer is: its tokenizer.json and the tokens it reads at most (special tokens included)."""

    tokenizer_file: Path
    max_length: int


@dataclass
class Prepared:
    """Documents chunked and tokenised: each document's chunk texts, and every chunk's token ids end to end (int32)
    with each chunk's length, in the chunks' order."""

    texts: list[list[str]]
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

    def prepare(self, texts: list[str]) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
        """Each text's chunk texts (strings only: the process that takes them unpickles a string far faster than a
        `Chunk`), and the token ids and lengths of every chunk."""
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
        every = cast(list[list[int]], ids)  # each one filled by now
        lengths = np.fromiter(map(len, every), dtype=np.int64, count=len(every))
        flat = np.fromiter(itertools.chain.from_iterable(every), dtype=np.int32, count=int(lengths.sum()))
        return [[chunk.text for chunk in document] for document in chunks], flat, lengths

    def _wrap(self, own: list[int]) -> list[int]:
        assert self.prefix is not None and self.suffix is not None
        room = self.max_length - len(self.prefix) - len(self.suffix)
        return [*self.prefix, *own[:room], *self.suffix]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ChunkPool:
    """`workers` processes that chunk documents as `chunk_text` does (giving the chunks' texts) and tokenise the
    chunks for the model of `spec`. The processes start on first use, in the event loop that uses them; a process
    that dies fails the tasks it held (ChunkPoolError) and is replaced by the next task."""

    def __init__(self, chunker: HFTokenizer, spec: TokenSpec, chunk_tokens: int, overlap: int, workers: int) -> None:
        init = (str(chunker.path), spec, chunk_tokens, overlap)
        self._pool = ProcessPool(__name__, init, workers, name="chunking", error=ChunkPoolError, queued=QUEUED)
        self.workers = workers

    def pids(self) -> list[int]:
        """The worker processes running now."""
        return self._pool.pids()

    async def prepare(self, texts: list[str]) -> Prepared:
        """The chunks and token ids of `texts`, in groups of GROUP documents over the workers."""
        parts = await self._pool.map([texts[i : i + GROUP] for i in range(0, len(texts), GROUP)])
        if not parts:
            return Prepared([], np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64))
        chunks = [document for part in parts for document in part[0]]
        return Prepared(chunks, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))

    def close(self) -> None:
        """Stop the processes; tasks not answered fail."""
        self._pool.close()


# -- in a worker process ----------------------------------------------------------------------------------------


def main() -> None:
    """A worker: the first message is the `_Worker`'s arguments, each next one a group of texts, answered with their
    chunks."""
    serve(lambda arguments: _Worker(*arguments).prepare)


if __name__ == "__main__":
    main()
