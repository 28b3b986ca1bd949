from __future__ import annotations

import pytest

from plugkit.plugins.retrieval.embeddings import build_embedder
from plugkit.plugins.retrieval.embeddings.base import EmbeddingError
from plugkit.plugins.retrieval.embeddings.openai import OpenAIEmbedder
from plugkit.plugins.retrieval.settings import RetrievalSettings
from tests.helpers import free_port
from tests.plugins.retrieval.conftest import EmbeddingsServer, hashed_vector


def make(server: EmbeddingsServer, key: str | None = None, **options: object) -> OpenAIEmbedder:
    return OpenAIEmbedder(server.base_url, key or server.api_key, "test-embed", 8, backoff_s=0.01, **options)  # type: ignore[arg-type]


async def test_vectors_come_back_in_input_order_and_unit_length(fresh_embeddings_server: EmbeddingsServer) -> None:
    embedder = make(fresh_embeddings_server)
    vectors = await embedder.embed_documents(["alpha", "beta", "gamma"])
    assert vectors[1] == pytest.approx(hashed_vector("beta", 8))
    assert all(sum(x * x for x in v) == pytest.approx(1.0) for v in vectors)
    await embedder.aclose()


async def test_inputs_are_sent_in_batches_of_the_configured_size(fresh_embeddings_server: EmbeddingsServer) -> None:
    embedder = make(fresh_embeddings_server, batch_size=2)
    assert len(await embedder.embed_documents([f"t{i}" for i in range(5)])) == 5
    assert [len(c["input"]) for c in fresh_embeddings_server.calls] == [2, 2, 1]
    assert all(c["model"] == "test-embed" for c in fresh_embeddings_server.calls)
    await embedder.aclose()


async def test_429_and_5xx_are_retried_until_success(fresh_embeddings_server: EmbeddingsServer) -> None:
    fresh_embeddings_server.fail_next.extend([429, 503, 500])
    embedder = make(fresh_embeddings_server)
    assert len(await embedder.embed_queries(["q"])) == 1
    assert len(fresh_embeddings_server.calls) == 4
    await embedder.aclose()


async def test_retries_run_out_with_an_error_naming_the_rate_limit(fresh_embeddings_server: EmbeddingsServer) -> None:
    fresh_embeddings_server.fail_next.extend([429] * 10)
    embedder = make(fresh_embeddings_server, max_retries=2)
    with pytest.raises(EmbeddingError, match="rate limiting"):
        await embedder.embed_documents(["x"])
    assert len(fresh_embeddings_server.calls) == 3
    await embedder.aclose()


async def test_a_refused_key_is_a_clear_error_without_retries(fresh_embeddings_server: EmbeddingsServer) -> None:
    embedder = make(fresh_embeddings_server, key="sk-wrong")
    with pytest.raises(EmbeddingError, match=r"refused the API key \(401\): Incorrect API key"):
        await embedder.embed_documents(["x"])
    assert len(fresh_embeddings_server.calls) == 1
    await embedder.aclose()


async def test_dimensions_are_sent_when_configured(fresh_embeddings_server: EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder(
        fresh_embeddings_server.base_url, fresh_embeddings_server.api_key, "m", 16, send_dimensions=True
    )
    assert len((await embedder.embed_documents(["x"]))[0]) == 16
    assert fresh_embeddings_server.calls[0]["dimensions"] == 16
    await embedder.aclose()


async def test_a_dimension_other_than_configured_is_an_error(fresh_embeddings_server: EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder(fresh_embeddings_server.base_url, fresh_embeddings_server.api_key, "m", 12)
    with pytest.raises(EmbeddingError, match="dimension 8, not the configured 12"):
        await embedder.embed_documents(["x"])
    await embedder.aclose()


async def test_an_unreachable_endpoint_is_a_clear_error() -> None:
    embedder = OpenAIEmbedder(f"http://127.0.0.1:{free_port()}/v1", "k", "m", 8, max_retries=1, backoff_s=0.01)
    with pytest.raises(EmbeddingError, match="unreachable"):
        await embedder.embed_documents(["x"])
    await embedder.aclose()


def test_settings_build_an_openai_embedder_with_known_dimensions() -> None:
    embedder = build_embedder(RetrievalSettings(embedder="openai", openai_model="text-embedding-3-large"))
    assert isinstance(embedder, OpenAIEmbedder) and embedder.dimension == 3072


def test_an_unknown_model_without_dimensions_is_refused() -> None:
    with pytest.raises(EmbeddingError, match="PLUGKIT_OPENAI_DIMENSIONS"):
        build_embedder(RetrievalSettings(embedder="openai", openai_model="nomic-embed-text"))


async def test_azure_openai_is_called_at_the_deployment_url_with_api_version_and_api_key_header(
    fresh_embeddings_server: EmbeddingsServer,
) -> None:
    endpoint = fresh_embeddings_server.base_url.removesuffix("/v1")
    embedder = OpenAIEmbedder(
        endpoint,
        fresh_embeddings_server.api_key,
        "text-embedding-3-small",
        8,
        api_version="2024-10-21",
        deployment="my-embedder",
        send_dimensions=True,
    )
    vectors = await embedder.embed_documents(["alpha", "beta"])
    assert vectors[1] == pytest.approx(hashed_vector("beta", 8))
    call = fresh_embeddings_server.calls[-1]
    assert (call["deployment"], call["api-version"], call["dimensions"]) == ("my-embedder", "2024-10-21", 8)
    await embedder.aclose()


async def test_azure_openai_settings_build_an_embedder_that_a_wrong_key_fails_clearly(
    fresh_embeddings_server: EmbeddingsServer,
) -> None:
    endpoint = fresh_embeddings_server.base_url.removesuffix("/v1")
    settings = RetrievalSettings(
        embedder="openai",
        openai_base_url=endpoint,
        openai_api_key="wrong",
        openai_api_version="2024-10-21",
        openai_deployment="emb",
        openai_dimensions=8,
        openai_max_retries=0,
    )
    embedder = build_embedder(settings)
    with pytest.raises(EmbeddingError, match="refused the API key"):
        await embedder.embed_queries(["q"])
    assert fresh_embeddings_server.calls[-1]["deployment"] == "emb"
