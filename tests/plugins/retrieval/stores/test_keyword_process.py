"""The keyword process: the embedded store's background keyword catch-up, run in a process of its own."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore
from plugkit.plugins.retrieval.stores.keyword_process import background_pid, catch_up_elsewhere
from tests.plugins.retrieval.stores.test_embedded import INFO, document
from tests.plugins.retrieval.stores.test_keyword_index import keyword


async def test_the_background_catch_up_commits_in_another_process_and_this_one_shows_it_once_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EmbeddedStore, "_keywords_behind", lambda self: None)  # called by hand below
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document(f"d{i}", [f"gamma{i} shared"], seed=i) for i in range(30)])
    head = store._head(store.conn)
    seq = await asyncio.to_thread(catch_up_elsewhere, store._keywords, store.db_path)
    assert seq == head
    assert background_pid() not in (None, os.getpid())
    # This process's searcher still shows the commit it last saw, and its seq says so.
    assert store._keywords.applied < head
    assert store._keywords.search("gamma7", 10) == []
    store._keywords.adopt()
    assert store._keywords.applied == head
    assert [rowid for rowid, _ in store._keywords.search("gamma7", 10)] == [8]
    await store.close()


async def test_a_killed_background_process_is_replaced_by_the_next_catch_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EmbeddedStore, "_keywords_behind", lambda self: None)
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["epsilon first"])])
    await asyncio.to_thread(catch_up_elsewhere, store._keywords, store.db_path)
    killed = background_pid()
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    await store.replace_documents([document("b", ["epsilon second"])])
    seq = await asyncio.to_thread(catch_up_elsewhere, store._keywords, store.db_path)
    assert seq == store._head(store.conn)
    assert background_pid() not in (None, killed)
    store._keywords.adopt()
    assert sorted(h.id for h in await store.search(keyword("epsilon"))) == ["a_0", "b_0"]
    await store.close()
