"""LangChain's OpenAPI function-calling path (langchain-community 0.4), a host-side client nobody here wrote, against
every reference plugin: its parser reads each spec, and its callable's requests are served."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from langchain_classic.chains.openai_functions.openapi import openapi_spec_to_openai_fn
from langchain_community.utilities.openapi import OpenAPISpec

from plugkit.plugins.retrieval.app import create_app as create_retrieval_app
from plugkit.plugins.retrieval.settings import RetrievalSettings
from plugkit.plugins.sports.app import create_app as create_sports_app
from plugkit.plugins.sports.settings import SportsSettings
from plugkit.plugins.todo.app import create_app as create_todo_app
from plugkit.plugins.todo.settings import TodoSettings
from plugkit.spec import iter_operations
from tests.helpers import PluginServer, asgi_client

APPS: dict[str, Callable[[Path], FastAPI]] = {
    "todo": lambda d: create_todo_app(TodoSettings(data_dir=d)),
    "sports": lambda d: create_sports_app(SportsSettings(data_dir=d)),
    "retrieval": lambda d: create_retrieval_app(RetrievalSettings(data_dir=d)),
    "retrieval-memory": lambda d: create_retrieval_app(RetrievalSettings(data_dir=d, memory=True)),
}


@pytest.mark.parametrize("spec_path", ["/openapi.json", "/openapi.full.json"])
@pytest.mark.parametrize("plugin", sorted(APPS))
async def test_langchain_reads_every_plugin_spec_as_one_function_per_operation(
    plugin: str, spec_path: str, tmp_path: Path
) -> None:
    async with asgi_client(APPS[plugin](tmp_path)) as client:
        document: dict[str, Any] = (await client.get(spec_path)).json()
    functions, _call = openapi_spec_to_openai_fn(OpenAPISpec.from_spec_dict(document))
    assert sorted(f["name"] for f in functions) == sorted(op["operationId"] for _p, _m, op in iter_operations(document))


def call_api(server: PluginServer) -> Callable[..., Any]:
    spec = OpenAPISpec.from_url(f"{server.base_url}/openapi.json")
    return openapi_spec_to_openai_fn(spec)[1]


@pytest.mark.slow
@pytest.mark.parametrize("body_as", ["json", "data"])
def test_langchains_callable_adds_a_todo(tmp_path: Path, body_as: str) -> None:
    """`data` is how the callable sends a body the model produced as a string or dict: without a Content-Type."""
    with PluginServer("todo", "--data-dir", str(tmp_path)) as server:
        call = call_api(server)
        added = call("addTodo", {"path_params": {"username": "alice"}, body_as: {"todo": "buy milk"}})
        assert added.status_code == 200, added.text
        listed = call("getTodos", {"path_params": {"username": "alice"}})
        assert listed.json()["todos"] == ["buy milk"]


@pytest.fixture(scope="module")
def memory_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginServer]:
    """One retrieval --memory server for the body variants below; each stores and finds a document of its own."""
    with PluginServer("retrieval", "--data-dir", str(tmp_path_factory.mktemp("memory")), "--memory") as server:
        yield server


# A document and a question that finds it first, per body variant, so that neither finds the other's document.
MEMORIES = {
    "json": ("The mitochondria is the powerhouse of the cell.", "what produces energy in cells?"),
    "data": ("Volcanoes erupt when molten rock rises through the crust.", "why do volcanoes erupt?"),
}


@pytest.mark.slow
@pytest.mark.parametrize("body_as", ["json", "data"])
def test_langchains_callable_queries_documents(memory_server: PluginServer, body_as: str) -> None:
    call = call_api(memory_server)
    text, question = MEMORIES[body_as]
    upserted = call("upsertDocuments", {body_as: {"documents": [{"id": f"doc-{body_as}", "text": text}]}})
    assert upserted.status_code == 200, upserted.text
    found = call("queryDocuments", {body_as: {"queries": [{"query": question}]}})
    assert found.status_code == 200, found.text
    assert found.json()["results"][0]["results"][0]["text"] == text


@pytest.mark.slow
def test_langchains_plugin_retriever_names_the_uploaded_file_each_result_came_from(tmp_path: Path) -> None:
    """ChatGPTPluginRetriever sends filter: null and shows a result's source_id as its source."""
    from langchain_community.retrievers import ChatGPTPluginRetriever

    with PluginServer("retrieval", "--data-dir", str(tmp_path)) as server:
        upload = {"file": ("cells.txt", b"The mitochondria is the powerhouse of the cell.", "text/plain")}
        assert httpx.post(f"{server.base_url}/upsert-file", files=upload).status_code == 200
        retriever = ChatGPTPluginRetriever(url=server.base_url, bearer_token="unused-without-auth", top_k=1)
        [document] = retriever.invoke("what produces energy in cells?")
    assert document.page_content == "The mitochondria is the powerhouse of the cell."
    assert document.metadata["source"] == "cells.txt"


@pytest.mark.slow
def test_langchains_ai_plugin_tool_loads_the_manifest_and_the_spec_it_names(tmp_path: Path) -> None:
    from langchain_community.tools import AIPluginTool

    with PluginServer("todo", "--data-dir", str(tmp_path)) as server:
        tool = AIPluginTool.from_plugin_url(f"{server.base_url}/.well-known/ai-plugin.json")
    assert tool.name == "todo"
    assert "addTodo" in tool.api_spec and "Usage Guide: Plugin for managing a TODO list" in tool.api_spec
