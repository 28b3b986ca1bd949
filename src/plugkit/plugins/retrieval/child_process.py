"""Helper processes of the retrieval plugin started as `python -m <module>`: plain subprocesses, not multiprocessing's
spawn, which imports the caller's main script again in the child (a script without an `if __name__ == "__main__"`
guard then runs twice, or fails). The child finds plugkit where this process did, installed or in a source tree.
Messages between them are framed: a length (HEADER bytes, little-endian), then a pickle."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import plugkit

HEADER = 8


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
    """The next message on a blocking stream, or None at its end."""
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
