from __future__ import annotations

import os
import threading

import pytest

from plugkit.plugins.retrieval.stores.threads import lower_this_thread


def _priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priorities are a Linux feature")
def test_a_lowered_thread_runs_below_its_starter_and_so_do_the_threads_it_starts_from_then() -> None:
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = _priority()

    def lowered() -> None:
        seen["before"] = _priority()
        lower_this_thread(3)
        seen["after"] = _priority()
        started = threading.Thread(target=child)
        started.start()
        started.join()
        lower_this_thread(40)  # never past the lowest priority there is
        seen["floor"] = _priority()

    starter = _priority()
    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    assert seen["before"] == starter and seen["after"] == seen["child"] == min(starter + 3, 19)
    assert seen["floor"] == 19 and _priority() == starter
