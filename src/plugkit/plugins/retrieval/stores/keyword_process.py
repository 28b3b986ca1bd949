"""The process that catches the embedded store's keyword indexes up in the background.

tantivy's indexing lets the GIL go for each document; in a thread beside busy Python it then waits a switch interval
(5 ms) to get it back, so a catch-up of 3,000 SciFact abstracts took 5.9-12.6 s there against 0.4-0.5 s alone or in
a process of its own (bench/results/keyword_gil.json). So each plugkit process that writes keeps one such process
(`catch_up_elsewhere`), started on first use: `python -m plugkit.plugins.retrieval.stores.keyword_process`, a plain
subprocess (`child_process`). It reads one request a line on stdin (JSON: the index's directory, the database, its
instance, the analyzer's stop-word choice), catches that index up under the index's writer lock (keyword_index), and
answers the seq the index then reflects; the caller then shows that commit with `KeywordIndex.adopt`. It keeps the
last few indexes open, runs `nice` below its parent, and ends when its stdin closes (the parent exited or died).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from plugkit.plugins.retrieval.child_process import module_process
from plugkit.plugins.retrieval.stores.keyword_index import KeywordIndex

OPENED_KEPT = 8  # indexes the process keeps open (the most recently used)

log = logging.getLogger("plugkit.retrieval")


class KeywordProcessError(RuntimeError):
    """The background process could not catch the index up (its message says why)."""


class _Process:
    """The one background process of this process, started on first use and again after it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None

    def _started(self, nice: int) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = module_process(__name__, str(nice), text=True)
        return self._proc

    def request(self, message: dict[str, Any], nice: int) -> int:
        with self._lock:
            for attempt in range(2):
                proc = self._started(nice)
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    proc.stdin.write(json.dumps(message) + "\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                except OSError:  # its pipe broke: it died
                    line = ""
                if line:
                    reply = json.loads(line)
                    if "error" in reply:
                        raise KeywordProcessError(reply["error"])
                    return int(reply["seq"])
                proc.kill()
                proc.wait()
                self._proc = None
                if attempt:
                    raise KeywordProcessError("the keyword catch-up process ended without an answer, twice")
            raise AssertionError("unreachable")

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None


_process = _Process()


def catch_up_elsewhere(index: KeywordIndex, db_path: Path, nice: int = 0) -> int:
    """Have this process's background process catch `index` up with the database at `db_path` (the process is
    started on first use, `nice` below this one) and return the seq the index then reflects; `index.adopt()` shows
    that commit here. Waits without the GIL."""
    message = {
        "directory": str(index.directory),
        "db_path": str(db_path),
        "instance": index.instance,
        "stopwords": index.stopwords,
    }
    return _process.request(message, nice)


def background_pid() -> int | None:
    """The background process's pid while it runs."""
    return _process.pid()


# -- in the background process ----------------------------------------------------------------------------------

_opened: dict[tuple[str, str, bool], KeywordIndex] = {}


def _catch_up(directory: str, db_path: str, instance: str, stopwords: bool) -> int:
    key = (directory, instance, stopwords)
    index = _opened.pop(key, None)
    if index is None:
        index = KeywordIndex(Path(directory), stopwords=stopwords)
        index.attach(instance)
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the store checkpoints
        index.catch_up(conn)
    finally:
        conn.close()
    _opened[key] = index  # the most recently used last; dropped on failure (opened afresh next time)
    while len(_opened) > OPENED_KEPT:
        del _opened[next(iter(_opened))]
    return index.applied


def _serve(requests: IO[str], answers: IO[str]) -> None:
    for line in requests:
        try:
            answer: dict[str, Any] = {"seq": _catch_up(**json.loads(line))}
        except Exception as exc:
            log.exception("the keyword index could not catch up")
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main() -> None:
    try:
        os.nice(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    except OSError:
        pass
    answers, sys.stdout = sys.stdout, sys.stderr  # nothing else may write to the answers
    logging.basicConfig(level=logging.WARNING)
    _serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
