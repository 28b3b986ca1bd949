"""The model's forward pass as CUDA graphs. The GPU tests run where torch sees a GPU (the device machine: see
bench/gpu.py); on a CPU the pipeline never builds graphs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from plugkit.plugins.retrieval.embeddings import graphs, pipeline
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder

torch = pytest.importorskip("torch")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
TEXTS = [
    "Vitamin D supplementation reduces the risk of fractures in the elderly.",
    "Paris",
    "0-dimensional biomaterials lack inductive properties. " * 12,
    "CRISPR-Cas9 off-target effects in human embryos (n=12, p<0.05)",
] * 40


def token_ids(embedder: LocalEmbedder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    spec = embedder.token_spec()
    return pipeline.flat_token_ids(pipeline.fast_tokenizer(spec.tokenizer_file.parent, spec.max_length), texts)


@pytest.fixture(scope="module")
def cpu_embedder() -> LocalEmbedder:
    return LocalEmbedder(device="cpu", precision="fp32", batch_size=4, query_backend="torch")


def test_the_model_on_a_cpu_runs_without_graphs(cpu_embedder: LocalEmbedder) -> None:
    flat, lengths = token_ids(cpu_embedder, TEXTS[:8])
    vectors = pipeline.encode_ids(cpu_embedder.load(), flat, lengths, 4, "cpu")
    assert vectors.shape == (8, cpu_embedder.dimension)
    assert cpu_embedder.load() not in graphs._GRAPHS


def test_a_packed_batch_holds_each_rows_ids_then_its_length_and_unpacks_to_the_batchs_features(
    cpu_embedder: LocalEmbedder,
) -> None:
    flat, lengths = token_ids(cpu_embedder, TEXTS[:11])
    options: dict[str, Any] = {"width_multiple": 8, "row_multiple": 4}
    plain = list(pipeline.batches(flat, lengths, 8, **options))
    packed = list(pipeline.batches(flat, lengths, 8, packed=True, **options))
    assert [p.tolist() for p, _ in packed] == [p.tolist() for p, _ in plain]
    for (_, features), (_, packing) in zip(plain, packed, strict=True):
        (tensor,) = packing.values()
        assert tensor.dtype == torch.int32
        assert tensor.shape == (features["input_ids"].shape[0], features["input_ids"].shape[1] + 1)
        assert tensor[:, -1].tolist() == features["attention_mask"].sum(dim=1).tolist()
        unpacked = graphs.unpack(tensor)
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(unpacked[name], features[name]), name
    model = cpu_embedder.load()
    with torch.inference_mode():
        forward = graphs.ModelGraphs(model, "cpu").forward(packed[-1][1]["packed"])
        expected = model(plain[-1][1])["sentence_embedding"]
    assert torch.allclose(forward, expected, atol=1e-6)


@gpu
def test_graphs_give_the_eager_models_vectors_and_each_shape_is_captured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = LocalEmbedder(device="cuda", batch_size=64)
    model = embedder.load()
    flat, lengths = token_ids(embedder, TEXTS)
    monkeypatch.setattr(pipeline, "GPU_GRAPHS", False)
    eager = pipeline.encode_ids(model, flat, lengths, 64, "cuda")
    monkeypatch.setattr(pipeline, "GPU_GRAPHS", True)
    first = pipeline.encode_ids(model, flat, lengths, 64, "cuda")
    captured = graphs.model_graphs(model, "cuda")
    shapes = dict(captured.graphs)
    again = pipeline.encode_ids(model, flat, lengths, 64, "cuda")

    assert captured.failed is None
    assert shapes and captured.graphs == shapes  # the second call replays the first call's graphs
    assert np.array_equal(first, again)
    assert np.einsum("ij,ij->i", first, eager).min() > 0.999


@gpu
def test_a_model_that_cannot_be_captured_runs_eagerly_with_the_same_vectors() -> None:
    embedder = LocalEmbedder(device="cuda", batch_size=64)
    model = embedder.load()

    class Syncing(torch.nn.Module):  # asks the device for a value mid-pass: not allowed in a capture
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, features: dict[str, Any]) -> dict[str, Any]:
            if float(features["attention_mask"].sum()) < 0:
                raise AssertionError("never")
            return dict(self.inner(features))

    flat, lengths = token_ids(embedder, TEXTS[:16])
    syncing = Syncing()
    vectors = pipeline.encode_ids(syncing, flat, lengths, 64, "cuda")
    expected = pipeline.encode_ids(model, flat, lengths, 64, "cuda")

    assert graphs.model_graphs(syncing, "cuda").failed
    assert not graphs.model_graphs(syncing, "cuda").graphs
    assert np.einsum("ij,ij->i", vectors, expected).min() > 0.999
