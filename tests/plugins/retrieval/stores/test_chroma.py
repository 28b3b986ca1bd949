"""The Chroma store: its own behaviour, and the whole contract suite again against a real `chroma run` server.

The contract suite (tests/contract) runs the embedded client; this module runs the same tests, unchanged, against
one Chroma server for the module, started with the package's own `chroma run` on a free port of 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import chromadb
import httpx
import pytest

from plugkit.plugins.retrieval.filters import And, Equals, Not, Range, to_tree
from plugkit.plugins.retrieval.models import DocumentMetadataFilter, Source, parse_filter
from plugkit.plugins.retrieval.stores.base import SearchRequest, StoreInfo, StoreMismatchError
from plugkit.plugins.retrieval.stores.chroma import (
    bm25,
    chroma_where,
    conditions_of,
    connect,
    create_store,
    query_terms,
    record_id,
    where_of,
)
from plugkit.plugins.retrieval.stores.common import StoreSettings
from tests.contract.conftest import open_store, store  # noqa: F401 - the contract fixtures, for the suite below
from tests.contract.contract_data import INFO, axis, document, embed
from tests.contract.test_filters import *  # noqa: F403 - the filter suite, run here against the server
from tests.contract.test_vector_store import *  # noqa: F403 - the contract suite, run here against the server
from tests.helpers import free_port


def raw_client(path: Path) -> chromadb.api.ClientAPI:
    """chromadb's own client on a folder, with the settings the store uses (one engine per folder and settings)."""
    return chromadb.PersistentClient(path=str(path), settings=chromadb.Settings(anonymized_telemetry=False))


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (`chroma run`) on a free port of 127.0.0.1, for this module."""
    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    path = tmp_path_factory.mktemp("chroma-server")
    log = (path.parent / "chroma-server.log").open("wb")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chroma run did not answer within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def provider() -> str:
    return "chroma"


@pytest.fixture
def make_settings(chroma_server: str) -> Callable[[str], StoreSettings]:
    """Stores of the contract suite on the Chroma server, each test in collections of its own."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    return lambda collection="contract": StoreSettings(store_url=chroma_server, collection=prefix + collection)


def test_where_of_one_condition_is_the_condition_and_of_several_an_and() -> None:
    assert where_of([{"tenant": {"$eq": ""}}]) == {"tenant": {"$eq": ""}}
    assert where_of(conditions_of("acme", DocumentMetadataFilter(author="ann", start_date="2024-01-01"))) == {
        "$and": [
            {"tenant": {"$eq": "acme"}},
            {"$and": [{"author": {"$in": ["ann"]}}, {"created_ts": {"$gte": 1704067200.0}}]},
        ]
    }


def test_filter_values_stay_values_whatever_they_hold() -> None:
    hostile = '{"$ne": 1} \' OR 1=1 --'
    assert conditions_of(None, DocumentMetadataFilter(source_id=hostile))[1] == {"source_id": {"$in": [hostile]}}


def test_a_custom_string_comparison_also_matches_list_fields_holding_the_value() -> None:
    assert chroma_where(Equals("tags", "string", ("beta",))) == {
        "$or": [{"c.tags": {"$in": ["beta"]}}, {"c.tags": {"$contains": "beta"}}]
    }


def test_a_negation_is_pushed_down_to_comparisons_that_match_chunks_lacking_the_key() -> None:
    tree = Not(And((Equals("tags", "string", ("beta",)), Range("priority", "number", gte=2.0, lt=5.0))))
    assert chroma_where(tree) == {
        "$or": [
            {"$and": [{"c.tags": {"$nin": ["beta"]}}, {"c.tags": {"$not_contains": "beta"}}]},
            {
                "$or": [
                    {"ranged": {"$not_contains": "c.priority"}},
                    {"c.priority": {"$lt": 2.0}},
                    {"c.priority": {"$gte": 5.0}},
                ]
            },
        ]
    }
    assert chroma_where(Not(Not(Equals("urgent", "bool", (True,))))) == {"c.urgent": {"$in": [True]}}


def test_query_terms_are_distinct_lowercase_words_without_stopwords_unless_only_stopwords() -> None:
    assert query_terms("The Owls and the owls of (Paris).*") == ["owls", "paris"]
    assert query_terms("the of") == ["the", "of"]
    assert query_terms("?!") == []


def test_bm25_ranks_more_occurrences_and_rarer_terms_higher() -> None:
    texts = ["owl owl owl", "owl bat", "bat bat cat", "cat"]
    scores = bm25(texts, ["owl", "cat"], total=100)
    assert scores[0] > scores[1] > 0
    assert scores[3] > 0
    assert bm25(["nothing here"], ["owl"], total=10) == [0.0]


def test_record_ids_are_stable_and_differ_between_tenants() -> None:
    assert record_id("", "d_0") == record_id("", "d_0")
    assert record_id("acme", "d_0") != record_id("", "d_0")


async def test_without_a_url_the_embedded_client_keeps_its_files_in_the_data_directory(tmp_path: Path) -> None:
    made = create_store(StoreSettings(data_dir=tmp_path / "data", collection="plugkit_chunks"))
    await made.open(INFO)
    await made.replace_documents([document("d", "kept on disk")])
    await made.close()

    assert (tmp_path / "data" / "chroma" / "chroma.sqlite3").is_file()
    reopened = create_store(StoreSettings(data_dir=tmp_path / "data", collection="plugkit_chunks"))
    await reopened.open(INFO)
    assert await reopened.count() == 1
    await reopened.close()


async def test_each_chunk_keeps_its_whole_metadata_as_json(tmp_path: Path) -> None:
    made = create_store(StoreSettings(store_url=str(tmp_path / "c"), collection="with_json"))
    await made.open(INFO)
    await made.replace_documents([document("d", "text", source=Source.chat, author="Zoë", url="https://e.x/1")])

    raw = raw_client(tmp_path / "c").get_collection("with_json").get(include=["metadatas"])
    metadata = raw["metadatas"][0] if raw["metadatas"] else {}
    assert json.loads(str(metadata["metadata"])) == {
        "source": "chat",
        "author": "Zoë",
        "url": "https://e.x/1",
        "document_id": "d",
    }
    await made.close()


async def test_a_collection_not_made_by_plugkit_is_refused(tmp_path: Path) -> None:
    raw_client(tmp_path / "c").create_collection("foreign", embedding_function=None)
    made = create_store(StoreSettings(store_url=str(tmp_path / "c"), collection="foreign"))

    with pytest.raises(StoreMismatchError, match="not made by plugkit"):
        await made.open(INFO)


async def test_keyword_search_takes_regex_syntax_in_a_query_as_plain_words(tmp_path: Path) -> None:
    made = create_store(StoreSettings(store_url=str(tmp_path / "c"), collection="hostile"))
    await made.open(INFO)
    await made.replace_documents([document("a", "alpha beta"), document("b", "a.*b (unclosed [x] \\ gamma")])

    for text in ("(unclosed", ".*", "[x] \\b|", "GAMMA)"):
        found = await made.search(SearchRequest(text=text, embedding=embed(text), mode="keyword", top_k=5))
        assert [r.metadata.document_id for r in found] == ([] if text == ".*" else ["b"]), text
    await made.close()


def test_a_server_url_with_a_key_authenticates_with_chromas_token_header(chroma_server: str) -> None:
    client = connect(
        StoreSettings(store_url=f"{chroma_server}?tenant=default_tenant&database=default_database", api_key="sk-1")
    )
    settings = client.get_settings()
    assert settings.chroma_client_auth_credentials == "sk-1"
    assert settings.chroma_auth_token_transport_header == "X-Chroma-Token"
    assert client.heartbeat() > 0


async def test_the_server_store_refuses_another_dimension(chroma_server: str) -> None:
    settings = StoreSettings(store_url=chroma_server, collection=f"t{uuid.uuid4().hex[:10]}_dim")
    made = create_store(settings)
    await made.open(INFO)
    await made.close()

    with pytest.raises(StoreMismatchError):
        await create_store(settings).open(StoreInfo(INFO.embedding_model, INFO.dimension * 2))


async def test_hybrid_weights_decide_which_ranking_leads(tmp_path: Path) -> None:
    made = create_store(StoreSettings(store_url=str(tmp_path / "c"), collection="weights"))
    await made.open(INFO)
    await made.replace_documents(
        [document("near", "zzz", vectors=[axis(0)]), document("word", "needle", vectors=[axis(3)])]
    )

    async def order(dense: float | None, keyword: float | None) -> list[str | None]:
        request = SearchRequest("needle", axis(0), 2, "hybrid", dense_weight=dense, keyword_weight=keyword)
        return [r.metadata.document_id for r in await made.search(request)]

    assert await order(None, None) == ["word", "near"]  # in both rankings beats first in one
    assert await order(1.0, 0.0) == ["near", "word"]
    assert await order(0.0, 1.0) == ["word", "near"]
    await made.close()


@pytest.mark.parametrize("hostile", ['{"$ne": 1}', "x' OR '1'='1", "$contains", "a\x00b"])
async def test_hostile_custom_values_match_only_themselves_and_their_negation_everything_else(
    tmp_path: Path, hostile: str
) -> None:
    made = create_store(StoreSettings(store_url=str(tmp_path / "c"), collection="hostile"))
    await made.open(INFO)
    await made.replace_documents(
        [document("mine", "text", team=hostile, tags=[hostile]), document("other", "text", team="x", tags=["x"])]
    )

    for key in ("team", "tags"):
        for kind, expected in (("eq", ["mine"]), ("ne", ["other"])):
            flt = to_tree(parse_filter({"key": key, "type": kind, "value": hostile}))
            found = await made.search(SearchRequest("text", embed("text"), 10, "hybrid", filter=flt))
            assert [r.metadata.document_id for r in found] == expected, (key, kind)
    assert await made.delete(filter=to_tree(parse_filter({"key": "team", "type": "eq", "value": hostile}))) == 1
    assert [c.text for c in await made.get_document("other")] == ["text"]
    await made.close()


async def test_a_collection_of_the_layout_before_custom_metadata_is_refused_naming_the_way_out(tmp_path: Path) -> None:
    made = create_store(StoreSettings(store_url=str(tmp_path / "c"), collection="older"))
    await made.open(INFO)
    await made.close()
    raw = raw_client(tmp_path / "c").get_collection("older")
    raw.add(ids=["r"], embeddings=[embed("old")], documents=["old"], metadatas=[{"tenant": "", "document_id": "d"}])

    with pytest.raises(StoreMismatchError, match="re-ingest into a new collection"):
        await create_store(StoreSettings(store_url=str(tmp_path / "c"), collection="older")).open(INFO)


async def test_an_integer_beyond_64_bits_is_stored_and_compares_as_a_number(tmp_path: Path) -> None:
    made = create_store(StoreSettings(store_url=str(tmp_path / "c"), collection="bigint"))
    await made.open(INFO)
    await made.replace_documents([document("big", "text", size=10**20), document("small", "text", size=3)])

    flt = to_tree(parse_filter({"key": "size", "type": "gt", "value": 10**19}))
    found = await made.search(SearchRequest("text", embed("text"), 10, "dense", filter=flt))
    assert [(r.metadata.document_id, r.metadata.custom) for r in found] == [("big", {"size": 10**20})]
    await made.close()
