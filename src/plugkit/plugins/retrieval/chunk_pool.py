"""Chunking and tokenising documents in worker processes, for an embedder fed faster than one core can chunk (a GPU).

Each worker chunks its documents with the chunker's tokenizer and hands back, with the chunks' texts, the token ids
the model reads for each chunk (special tokens and truncation as the model's tokenizer applies them): taken from the
one tokenisation of the document where the chunk's ends fall between words and the two tokenizers are the same file,
else by tokenising the chunk's text with the model's tokenizer. Either way the ids equal what tokenising the chunk's
text gives (tests/plugins/retrieval/test_chunk_pool.py), so the vectors equal those of the text path. Only the
chunker, `tokenizers` and numpy are imported in a worker.

The workers are plain subprocesses (`python -m plugkit.plugins.retrieval.chunk_pool`, never forked from a process
holding a CUDA context, and never running the caller's main script again as multiprocessing's spawn does), each
talking over its stdin and stdout: length-prefixed pickles, a group of documents one way and its chunks the other.
The event loop of the process that ingests reads the answers itself (`add_reader`), one read for a whole answer where
the pipe holds it (pipes are widened to PIPE_BYTES): each call that lets the GIL go costs a thread that wants it back
up to a switch interval (5 ms) beside busy Python, and the ingesting process runs Python most of the time.
ProcessPoolExecutor's feeder and result threads made about ten such calls for each task, which capped what its
workers could hand over at 4,700-8,000 chunks/s beside a busy thread however many workers ran (bench/chunk_pool.py).
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import hashlib
import itertools
import os
import pickle
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from plugkit.plugins.retrieval.child_process import HEADER, frame, module_process, serve
from plugkit.plugins.retrieval.chunking import Chunk, HFTokenizer, chunk_token_ids

GROUP = 128  # documents per task handed to a worker
QUEUED = 2  # tasks given to a worker at once: one it works on, one waiting in its pipe
PIPE_BYTES = 1 << 20  # pipe capacity asked for (Linux allows an unprivileged process up to 1 MiB by default)
READ_BYTES = 4 << 20


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


def _widen(fd: int) -> None:
    """Ask for a pipe of PIPE_BYTES (Linux; elsewhere, or when refused, the pipe keeps its size)."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is not None:
        try:
            fcntl.fcntl(fd, setpipe, PIPE_BYTES)
        except OSError:
            pass


@dataclass
class _Process:
    """One worker seen from the pool: its process, the futures of the tasks it holds (answered in order), and the
    bytes not yet written to it or not yet read from it."""

    proc: subprocess.Popen[bytes]
    stdin: int
    stdout: int
    waiting: collections.deque[asyncio.Future[Any]] = field(default_factory=collections.deque)
    unsent: bytearray = field(default_factory=bytearray)
    unread: bytearray = field(default_factory=bytearray)


class ChunkPool:
    """`workers` processes that chunk documents as `chunk_text` does (giving the chunks' texts) and tokenise the
    chunks for the model of `spec`. The processes start on first use, in the event loop that uses them; a process
    that dies fails the tasks it held (ChunkPoolError) and is replaced by the next task."""

    def __init__(self, chunker: HFTokenizer, spec: TokenSpec, chunk_tokens: int, overlap: int, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._init = frame((str(chunker.path), spec, chunk_tokens, overlap))
        self.workers = workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._processes: list[_Process] = []
        self._tasks: collections.deque[tuple[bytes, asyncio.Future[Any]]] = collections.deque()

    def pids(self) -> list[int]:
        """The worker processes running now."""
        return [p.proc.pid for p in self._processes if p.proc.poll() is None]

    async def prepare(self, texts: list[str]) -> Prepared:
        """The chunks and token ids of `texts`, in groups of GROUP documents over the workers."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()  # processes that another (perhaps closed) loop was reading
            self._loop = loop
        futures = []
        for i in range(0, len(texts), GROUP):
            future: asyncio.Future[Any] = loop.create_future()
            self._tasks.append((frame(texts[i : i + GROUP]), future))
            futures.append(future)
        self._dispatch()
        parts: list[Any] = await asyncio.gather(*futures)
        chunks = [document for part in parts for document in part[0]]
        if not parts:
            return Prepared([], np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64))
        return Prepared(chunks, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))

    def _dispatch(self) -> None:
        """Hand waiting tasks to the processes with room for them (starting processes up to `workers`)."""
        while self._tasks and self._tasks[0][1].done():  # cancelled while waiting
            self._tasks.popleft()
        while self._tasks:
            process = min(self._processes, key=lambda p: len(p.waiting), default=None)
            if (process is None or process.waiting) and len(self._processes) < self.workers:
                process = self._start()  # every process is busy: one more
            if process is None or len(process.waiting) >= QUEUED:
                return
            message, future = self._tasks.popleft()
            if future.done():
                continue
            process.waiting.append(future)
            process.unsent += message
            self._write(process)

    def _start(self) -> _Process:
        assert self._loop is not None
        proc = module_process(__name__, bufsize=0)
        assert proc.stdin is not None and proc.stdout is not None
        process = _Process(proc, proc.stdin.fileno(), proc.stdout.fileno())
        for fd in (process.stdin, process.stdout):
            _widen(fd)
            os.set_blocking(fd, False)
        process.unsent += self._init
        self._processes.append(process)
        self._loop.add_reader(process.stdout, self._readable, process)
        return process

    def _write(self, process: _Process) -> None:
        """Write what the process is owed, as far as its pipe takes it; the rest when it is writable again."""
        assert self._loop is not None
        try:
            written = os.write(process.stdin, process.unsent) if process.unsent else 0
        except BlockingIOError:
            written = 0
        except OSError:  # its end of the pipe is closed: it died, and its stdout says so
            process.unsent.clear()
            self._loop.remove_writer(process.stdin)
            return
        del process.unsent[:written]
        if process.unsent:
            self._loop.add_writer(process.stdin, self._write, process)
        else:
            self._loop.remove_writer(process.stdin)

    def _readable(self, process: _Process) -> None:
        try:
            data = os.read(process.stdout, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._ended(process)
            return
        process.unread += data
        while len(process.unread) >= HEADER:
            size = int.from_bytes(process.unread[:HEADER], "little")
            if len(process.unread) < HEADER + size:
                break
            answer = pickle.loads(process.unread[HEADER : HEADER + size])
            del process.unread[: HEADER + size]
            future = process.waiting.popleft()
            if future.done():
                continue
            if isinstance(answer, str):
                future.set_exception(ChunkPoolError(f"a chunking process failed: {answer}"))
            else:
                future.set_result(answer)
        self._dispatch()

    def _ended(self, process: _Process) -> None:
        """The process closed its stdout: it died (or was stopped). Fail what it held; the next task replaces it."""
        self._stop(process)
        code = process.proc.poll()
        for future in process.waiting:
            if not future.done():
                future.set_exception(ChunkPoolError(f"a chunking process ended (exit code {code}) with tasks undone"))
        process.waiting.clear()
        self._dispatch()

    def _stop(self, process: _Process) -> None:
        if process in self._processes:
            self._processes.remove(process)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(process.stdout)
            self._loop.remove_writer(process.stdin)
        for stream in (process.proc.stdin, process.proc.stdout):
            if stream is not None:
                stream.close()
        try:
            process.proc.wait(timeout=5)  # its stdin closed: it ends
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()

    def close(self) -> None:
        """Stop the processes; tasks not answered fail."""
        for process in list(self._processes):
            self._stop(process)
            for future in process.waiting:
                if not future.done():
                    future.set_exception(ChunkPoolError("the chunk pool was closed"))
        for _, future in self._tasks:
            if not future.done():
                future.set_exception(ChunkPoolError("the chunk pool was closed"))
        self._tasks.clear()
        self._loop = None


# -- in a worker process ----------------------------------------------------------------------------------------


def main() -> None:
    """A worker: the first message is the `_Worker`'s arguments, each next one a group of texts, answered with their
    chunks."""
    serve(lambda arguments: _Worker(*arguments).prepare)


if __name__ == "__main__":
    main()
