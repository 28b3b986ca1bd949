"""Helper processes of the retrieval plugin started as `python -m <module>`: plain subprocesses, not multiprocessing's
spawn, which imports the caller's main script again in the child (a script without an `if __name__ == "__main__"`
guard then runs twice, or fails). The child finds plugkit where this process did, installed or in a source tree.
Messages between them are framed: a length (HEADER bytes, little-endian), then a pickle.

`ProcessPool` talks to such processes from an event loop: the loop reads the answers itself (`add_reader`), one read
for a whole answer where the pipe holds it (pipes are widened to PIPE_BYTES). Each call that lets the GIL go costs a
thread that wants it back up to a switch interval (5 ms) beside busy Python, and a process that ingests runs Python
most of the time: ProcessPoolExecutor's feeder and result threads made about ten such calls for each task, which capped
what its workers could hand over at 4,700-8,000 chunks/s beside a busy thread however many workers ran
(bench/chunk_pool.py)."""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import plugkit

HEADER = 8
PIPE_BYTES = 1 << 20  # pipe capacity asked for (Linux allows an unprivileged process up to 1 MiB by default)
READ_BYTES = 4 << 20


def module_process(module: str, *args: str, **popen: Any) -> subprocess.Popen[Any]:
    """`python -m module args...` with pipes on its stdin and stdout (`popen`: more `subprocess.Popen` arguments)."""
    env = dict(os.environ)
    root = str(Path(plugkit.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, **popen
    )


def frame(value: Any) -> bytes:
    """`value` as one message."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return len(payload).to_bytes(HEADER, "little") + payload


def read_frame(stream: IO[bytes]) -> Any:
    """The next message on a blocking stream, or None at its end (so None itself is never sent as a message: a helper
    process would take it for the end of its requests)."""
    header = stream.read(HEADER)
    if len(header) < HEADER:
        return None
    size = int.from_bytes(header, "little")
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


def serve(handler_of: Callable[[Any], Callable[[Any], Any]]) -> None:
    """A helper process's main loop: the first message on stdin is given to `handler_of` for the handler of the next
    ones, each answered on stdout with what the handler returns (or a str: the error it raised). Ends when stdin
    closes, or when whoever read the answers has gone."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the answers
    arguments = read_frame(requests)
    if arguments is None:
        return
    handler = handler_of(arguments)
    while (request := read_frame(requests)) is not None:
        try:
            answer = handler(request)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it where it waits
            answer = f"{type(exc).__name__}: {exc}"
        try:
            answers.write(frame(answer))
            answers.flush()
        except BrokenPipeError:
            return


def _widen(fd: int) -> None:
    """Ask for a pipe of PIPE_BYTES (Linux; elsewhere, or when refused, the pipe keeps its size)."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is not None:
        try:
            fcntl.fcntl(fd, setpipe, PIPE_BYTES)
        except OSError:
            pass


def _reap(process: _Process) -> None:
    """Wait for a process whose stdin is closed to end (killed if it has not after 5 s)."""
    try:
        process.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.proc.kill()
        process.proc.wait()


@dataclass
class _Process:
    """One process seen from the pool: its process, the futures of the requests it holds (answered in order), and
    the bytes not yet written to it or not yet read from it."""

    proc: subprocess.Popen[bytes]
    stdin: int
    stdout: int
    waiting: collections.deque[asyncio.Future[Any]] = field(default_factory=collections.deque)
    unsent: bytearray = field(default_factory=bytearray)
    unread: bytearray = field(default_factory=bytearray)


class ProcessPool:
    """Up to `workers` processes running `module` (whose main is `serve`), each given `init` first, answering
    requests in order; `queued` requests are handed to a process at once (one it works on, the next ones waiting in
    its pipe). The processes start on first use, in the event loop that uses them, and another loop's use stops them
    first. A request's error comes back as `error` ("a <name> process failed: <its exception>"); a process that dies
    fails the requests it held and is replaced by the next request."""

    def __init__(
        self, module: str, init: Any, workers: int, *, name: str, error: type[Exception], queued: int = 2
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.module, self.workers, self.queued, self.name, self.error = module, workers, queued, name, error
        self._init = frame(init)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._processes: list[_Process] = []
        self._requests: collections.deque[tuple[bytes, asyncio.Future[Any]]] = collections.deque()

    def pids(self) -> list[int]:
        """The processes running now."""
        return [p.proc.pid for p in self._processes if p.proc.poll() is None]

    async def map(self, requests: list[Any]) -> list[Any]:
        """The answers to `requests`, in order, spread over the processes."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()  # processes that another (perhaps closed) loop was reading
            self._loop = loop
        futures = []
        for request in requests:
            future: asyncio.Future[Any] = loop.create_future()
            self._requests.append((frame(request), future))
            futures.append(future)
        self._dispatch()
        return list(await asyncio.gather(*futures))

    async def call(self, request: Any) -> Any:
        """The answer to one request."""
        (answer,) = await self.map([request])
        return answer

    def _dispatch(self) -> None:
        """Hand waiting requests to the processes with room for them (starting processes up to `workers`)."""
        while self._requests and self._requests[0][1].done():  # cancelled while waiting
            self._requests.popleft()
        while self._requests:
            process = min(self._processes, key=lambda p: len(p.waiting), default=None)
            if (process is None or process.waiting) and len(self._processes) < self.workers:
                process = self._start()  # every process is busy: one more
            if process is None or len(process.waiting) >= self.queued:
                return
            message, future = self._requests.popleft()
            if future.done():
                continue
            process.waiting.append(future)
            process.unsent += message
            self._write(process)

    def _start(self) -> _Process:
        assert self._loop is not None
        proc = module_process(self.module, bufsize=0)
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
                future.set_exception(self.error(f"a {self.name} process failed: {answer}"))
            else:
                future.set_result(answer)
        self._dispatch()

    def _ended(self, process: _Process) -> None:
        """The process closed its stdout: it died (or was stopped). Fail what it held; the next request replaces
        it."""
        self._stop(process)
        code = process.proc.poll()
        for future in process.waiting:
            if not future.done():
                future.set_exception(self.error(f"a {self.name} process ended (exit code {code}) with work undone"))
        process.waiting.clear()
        self._dispatch()

    def _stop(self, process: _Process) -> None:
        self._let_go(process)
        _reap(process)

    def _let_go(self, process: _Process) -> None:
        """Forget the process and close its pipes: its stdin closed, it ends."""
        if process in self._processes:
            self._processes.remove(process)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(process.stdout)
            self._loop.remove_writer(process.stdin)
        for stream in (process.proc.stdin, process.proc.stdout):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        """Stop the processes (all told at once, then each waited for); requests not answered fail."""
        closed = self.error(f"the {self.name} processes were stopped")
        stopping = list(self._processes)
        for process in stopping:
            self._let_go(process)
        for process in stopping:
            _reap(process)
            for future in process.waiting:
                if not future.done():
                    future.set_exception(closed)
        for _, future in self._requests:
            if not future.done():
                future.set_exception(closed)
        self._requests.clear()
        self._loop = None
