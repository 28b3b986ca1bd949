"""Helper processes of the retrieval plugin started as `python -m <module>`: plain subprocesses, not multiprocessing's
spawn, which imports the caller's main script again in the child (a script without an `if __name__ == "__main__"`
guard then runs twice, or fails). The child finds plugkit where this process did, installed or in a source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import plugkit


def module_process(module: str, *args: str, **popen: Any) -> subprocess.Popen[Any]:
    """`python -m module args...` with pipes on its stdin and stdout (`popen`: more `subprocess.Popen` arguments)."""
    env = dict(os.environ)
    root = str(Path(plugkit.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, **popen
    )
