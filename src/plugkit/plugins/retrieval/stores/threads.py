"""Background threads of the stores, below the work a caller waits for."""

from __future__ import annotations

import os
import threading


def lower_this_thread(nice: int) -> None:
    """Run the calling thread `nice` steps below its CPU priority, and so the threads it starts from now on (Linux
    keeps a priority per thread, inherited by the threads a thread creates: tantivy's, faiss's OpenMP team). Elsewhere
    nothing changes."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + nice, 19))
    except (AttributeError, OSError):
        pass
