"""Fixtures of the retrieval tests: the real local model, loaded once per session, and a real OpenAI-compatible
embeddings server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from plugkit.plugins.retrieval.chunking import HFTokenizer, minilm_tokenizer
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from tests.helpers import free_port


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    model = LocalEmbedder(batch_size=16)
    model.load()
    return model


@pytest.fixture(scope="session")
def tokenizer() -> HFTokenizer:
    return minilm_tokenizer()


def hashed_vector(text: str, dimension: int) -> list[float]:
    """A deterministic unit vector for a text (what the test embeddings server answers)."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[i % len(digest)] - 127.5 + i for i in range(dimension)]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


@dataclass
class EmbeddingsServer:
    """A small HTTP server speaking the OpenAI /v1/embeddings API; it can be told to fail the next calls."""

    base_url: str
    api_key: str
    fail_next: list[int] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


def _embeddings_app(state: EmbeddingsServer) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        state.calls.append(body)
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return JSONResponse(
                {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, status_code=401
            )
        if state.fail_next:
            status = state.fail_next.pop(0)
            return JSONResponse(
                {"error": {"message": f"simulated {status}"}}, status_code=status, headers={"retry-after": "0"}
            )
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimension = int(body.get("dimensions") or 8)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_vector(text, dimension)}
            for i, text in reversed(list(enumerate(inputs)))  # out of order: clients must sort by index
        ]
        return JSONResponse(
            {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}
        )

    @app.post("/openai/deployments/{deployment}/embeddings")
    async def azure_embeddings(deployment: str, request: Request) -> JSONResponse:
        """Azure OpenAI's shape: the deployment in the path, `api-version` in the query, the key in `api-key`."""
        body = await request.json()
        state.calls.append({**body, "deployment": deployment, "api-version": request.query_params.get("api-version")})
        if request.headers.get("api-key") != state.api_key:
            return JSONResponse(
                {"error": {"code": "401", "message": "Access denied due to invalid subscription key"}}, status_code=401
            )
        if not request.query_params.get("api-version"):
            return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, status_code=404)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimension = int(body.get("dimensions") or 8)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_vector(t, dimension)} for i, t in enumerate(inputs)
        ]
        return JSONResponse({"object": "list", "data": data, "model": deployment})

    return app


@pytest.fixture(scope="session")
def embeddings_server() -> Iterator[EmbeddingsServer]:
    port = free_port()
    state = EmbeddingsServer(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test-key")
    server = uvicorn.Server(uvicorn.Config(_embeddings_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the embeddings server did not start"
    yield state
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fresh_embeddings_server(embeddings_server: EmbeddingsServer) -> EmbeddingsServer:
    embeddings_server.fail_next.clear()
    embeddings_server.calls.clear()
    return embeddings_server
