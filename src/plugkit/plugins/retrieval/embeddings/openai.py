"""Embeddings from any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama...), and from Azure OpenAI
(`<endpoint>/openai/deployments/<deployment>/embeddings?api-version=...` with an `api-key` header)."""

from __future__ import annotations

import asyncio
import math
import random

import httpx

from plugkit.plugins.retrieval.embeddings.base import EmbeddingError

RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


class OpenAIEmbedder:
    """Batched async calls to `<base_url>/embeddings`, retried with exponential backoff on 429 and 5xx."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        dimension: int,
        *,
        send_dimensions: bool = False,
        batch_size: int = 256,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        client: httpx.AsyncClient | None = None,
        api_version: str | None = None,
        deployment: str | None = None,
    ) -> None:
        """`api_version` set means Azure OpenAI: `base_url` is the resource endpoint
        (https://<resource>.openai.azure.com), `deployment` the deployment's name (default: `model`), and the key is
        sent in the `api-key` header."""
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        if api_version:
            self.url = f"{self.base_url}/openai/deployments/{deployment or model}/embeddings"
            headers = {"api-key": api_key} if api_key else {}
        else:
            self.url = f"{self.base_url}/embeddings"
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model_id = model
        self.dimension = dimension
        self.send_dimensions = send_dimensions
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s, headers=headers)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            vectors.extend(await self._embed_batch(texts[i : i + self.batch_size]))
        return vectors

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return await self.embed_documents(texts)

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, object] = {"model": self.model_id, "input": texts, "encoding_format": "float"}
        if self.send_dimensions:
            body["dimensions"] = self.dimension
        url = self.url
        params = {"api-version": self.api_version} if self.api_version else None
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._client.post(url, json=body, params=params)
            except httpx.HTTPError as exc:
                if attempt >= self.max_retries:
                    raise EmbeddingError(f"the embedding endpoint {url} is unreachable: {exc!r}") from exc
                await self._sleep(attempt, None)
                continue
            if response.status_code == 200:
                return self._parse(response, len(texts))
            if response.status_code in RETRYABLE and attempt < self.max_retries:
                await self._sleep(attempt, response.headers.get("retry-after"))
                continue
            raise EmbeddingError(self._describe(response))
        raise EmbeddingError(f"the embedding endpoint {url} kept failing")  # not reached

    async def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * (2**attempt) * (0.5 + random.random())
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), 60.0))
            except ValueError:
                pass
        await asyncio.sleep(delay)

    def _describe(self, response: httpx.Response) -> str:
        try:
            message = response.json().get("error", {}).get("message") or response.text[:300]
        except (ValueError, AttributeError):
            message = response.text[:300]
        if response.status_code in (401, 403):
            return f"the embedding provider refused the API key ({response.status_code}): {message}"
        if response.status_code == 429:
            return f"the embedding provider is rate limiting and retries ran out (429): {message}"
        return f"the embedding provider answered {response.status_code}: {message}"

    def _parse(self, response: httpx.Response, expected: int) -> list[list[float]]:
        try:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"the embedding provider sent an answer that is not an embeddings list: {exc!r}"
            ) from exc
        if len(vectors) != expected:
            raise EmbeddingError(f"the embedding provider returned {len(vectors)} vectors for {expected} inputs")
        for v in vectors:
            if len(v) != self.dimension:
                raise EmbeddingError(
                    f"the embedding provider returned vectors of dimension {len(v)}, "
                    f"not the configured {self.dimension}"
                )
        return [_normalise(v) for v in vectors]


def _normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector
