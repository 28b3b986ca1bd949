from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from plugkit.plugins.retrieval.embeddings import build_embedder, model_cache_dir, pipeline
from plugkit.plugins.retrieval.embeddings.local import (
    CPU_BATCH,
    DIMENSION,
    LocalEmbedder,
    model_dir,
    resolve_precision,
)
from plugkit.plugins.retrieval.settings import RetrievalSettings
from tests.helpers import SHARED_DATA


def test_the_model_ships_inside_the_package() -> None:
    assert (model_dir() / "model.safetensors").is_file()


async def test_embeddings_are_unit_vectors_of_the_model_dimension(embedder: LocalEmbedder) -> None:
    vectors = await embedder.embed_documents(["The mitochondria is the powerhouse of the cell.", "Paris"])
    assert [len(v) for v in vectors] == [DIMENSION, DIMENSION]
    assert [float(np.linalg.norm(v)) for v in vectors] == pytest.approx([1.0, 1.0], abs=1e-4)


async def test_similar_texts_are_closer_than_unrelated_ones(embedder: LocalEmbedder) -> None:
    query, near, far = await embedder.embed_queries(
        ["How do cells make energy?", "Mitochondria produce ATP for the cell.", "The stock market fell today."]
    )
    assert float(np.dot(query, near)) > float(np.dot(query, far)) + 0.2


async def test_the_event_loop_keeps_running_while_the_model_embeds(embedder: LocalEmbedder) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await embedder.embed_documents(["some text to embed"] * 64)
    task.cancel()
    assert ticks > 1


async def test_nothing_to_embed_returns_nothing(embedder: LocalEmbedder) -> None:
    assert await embedder.embed_documents([]) == []


@pytest.fixture(scope="module")
def fp32_model() -> LocalEmbedder:
    model = LocalEmbedder(precision="fp32")
    model.load()
    return model


def test_batched_results_equal_one_by_one_results_in_fp32(fp32_model: LocalEmbedder) -> None:
    texts = ["alpha beta", "gamma delta epsilon", "zeta"]
    batched = LocalEmbedder(batch_size=3, precision="fp32")
    batched._model = fp32_model.load()
    single = LocalEmbedder(batch_size=1, precision="fp32")
    single._model = fp32_model.load()
    assert np.allclose(batched._encode(texts), single._encode(texts), atol=1e-5)


@pytest.fixture(scope="module")
def int8_model() -> LocalEmbedder:
    model = LocalEmbedder(precision="int8")
    model.load()
    return model


def test_int8_batched_results_stay_close_to_one_by_one_results(int8_model: LocalEmbedder) -> None:
    texts = ["alpha beta", "gamma delta epsilon", "zeta"]
    batched = np.asarray(int8_model._encode(texts))
    single = np.asarray([int8_model._encode([t])[0] for t in texts])
    assert np.sum(batched * single, axis=1).min() > 0.9  # activations are scaled per batch


def test_int8_vectors_stay_within_a_small_cosine_distance_of_fp32(
    int8_model: LocalEmbedder, fp32_model: LocalEmbedder
) -> None:
    texts = ["Vitamin D supplementation reduces the risk of fractures in the elderly.", "Paris is in France."]
    cosines = np.sum(np.asarray(int8_model._encode(texts)) * np.asarray(fp32_model._encode(texts)), axis=1)
    assert cosines.min() > 0.95


def test_bf16_vectors_stay_within_a_tiny_cosine_distance_of_fp32(fp32_model: LocalEmbedder) -> None:
    texts = ["Vitamin D supplementation reduces the risk of fractures in the elderly.", "Paris is in France."]
    bf16 = LocalEmbedder(precision="bf16")
    cosines = np.sum(np.asarray(bf16._encode(texts)) * np.asarray(fp32_model._encode(texts)), axis=1)
    assert cosines.min() > 0.99


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        LocalEmbedder(precision="fp8")  # type: ignore[arg-type]


def test_auto_precision_picks_bf16_where_the_cpu_has_it_else_fp32() -> None:
    import torch

    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert resolve_precision("auto") == ("bf16" if native else "fp32")
    assert LocalEmbedder().precision == resolve_precision("auto")
    assert resolve_precision("auto", device="cuda") == "fp16"
    assert resolve_precision("fp32") == "fp32"


def test_the_precision_setting_reaches_the_embedder(tmp_path: Path) -> None:
    settings = RetrievalSettings(data_dir=tmp_path, embed_precision="fp32")
    built = build_embedder(settings)
    assert isinstance(built, LocalEmbedder) and built.precision == "fp32"


def build_small_model(where: Path) -> Path:
    """A small sentence-transformers model directory (a 1-layer, 32-dimension BERT with MiniLM's tokenizer), built
    offline as a user's own model directory would be laid out."""
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    base = where / "tiny-bert"
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(base)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (model_dir() / name).is_file():
            shutil.copy(model_dir() / name, base / name)
    transformer = models.Transformer(str(base), max_seq_length=128)
    target = where / "my-small-model"
    SentenceTransformer(modules=[transformer, models.Pooling(32)], device="cpu").save(str(target))
    return target


async def test_a_model_directory_on_disk_replaces_the_bundled_model_with_its_own_id_and_dimension(
    tmp_path: Path,
) -> None:
    path = build_small_model(tmp_path)
    settings = RetrievalSettings(local_model=path, embed_precision="fp32")
    embedder = build_embedder(settings)
    assert (embedder.model_id, embedder.dimension) == ("local:my-small-model", 32)
    vectors = await embedder.embed_documents(["a first text", "another one"])
    assert [len(v) for v in vectors] == [32, 32]
    assert [float(np.linalg.norm(v)) for v in vectors] == pytest.approx([1.0, 1.0], abs=1e-4)
    assert vectors[0] != vectors[1]


async def test_a_store_built_with_a_model_directory_refuses_the_bundled_model(tmp_path: Path) -> None:
    from plugkit.plugins.retrieval.stores.base import StoreInfo, StoreMismatchError
    from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore

    own = LocalEmbedder(model_path=build_small_model(tmp_path), precision="fp32")
    store = EmbeddedStore(tmp_path / "store")
    await store.open(StoreInfo(own.model_id, own.dimension))
    await store.close()
    with pytest.raises(StoreMismatchError, match="local:my-small-model"):
        await EmbeddedStore(tmp_path / "store").open(StoreInfo(LocalEmbedder.model_id, DIMENSION))


def test_a_directory_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    from plugkit.plugins.retrieval.embeddings.base import EmbeddingError

    with pytest.raises(EmbeddingError, match="not a sentence-transformers model directory"):
        LocalEmbedder(model_path=tmp_path)


def test_the_device_setting_reaches_the_embedder(tmp_path: Path) -> None:
    settings = RetrievalSettings(data_dir=tmp_path, embed_device="cpu", embed_query_backend="torch")
    built = build_embedder(settings)
    assert isinstance(built, LocalEmbedder)
    assert (built.device, built.query_backend, built.batch_size) == ("cpu", "torch", CPU_BATCH)
    assert built.cache_dir == model_cache_dir(settings)


def test_fp16_is_refused_on_a_cpu_and_int8_on_a_gpu() -> None:
    with pytest.raises(ValueError, match="fp16"):
        LocalEmbedder(device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="int8"):
        LocalEmbedder(device="cuda", precision="int8")


def test_batches_are_sorted_by_length_and_padded_to_their_longest_text() -> None:
    tokenizer = pipeline.fast_tokenizer(model_dir(), 256)
    texts = ["a", "a b c d e f g", "a b c", "a b c d e", "a b"]
    ids, _ = pipeline.token_ids(tokenizer, texts)
    flat, lengths = pipeline.flat_token_ids(tokenizer, texts)
    made = list(pipeline.batches(flat, lengths, 2))
    assert sorted(int(p) for positions, _ in made for p in positions) == list(range(len(texts)))
    widths = [features["input_ids"].shape[1] for _, features in made]
    assert widths == sorted(widths, reverse=True)
    for positions, features in made:
        assert features["input_ids"].shape[1] == max(lengths[positions])
        assert features["attention_mask"].sum(dim=1).tolist() == lengths[positions].tolist()
        for row, position in enumerate(positions.tolist()):
            assert features["input_ids"][row, : lengths[position]].tolist() == ids[position]


def test_gpu_batches_are_padded_to_a_multiple_of_the_width_step_but_never_past_the_longest_text(
    fp32_model: LocalEmbedder,
) -> None:
    tokenizer = pipeline.fast_tokenizer(model_dir(), 256)
    texts = [f"text number {i} " + "word " * (i * 3) for i in range(12)]
    flat, lengths = pipeline.flat_token_ids(tokenizer, texts)
    made = list(pipeline.batches(flat, lengths, 4, width_multiple=8))
    longest = int(lengths.max())
    for positions, features in made:
        width = features["input_ids"].shape[1]
        assert width == min(-(-int(max(lengths[positions])) // 8) * 8, longest)
        assert features["attention_mask"].sum(dim=1).tolist() == lengths[positions].tolist()
    model = fp32_model.load()
    padded = pipeline.run_batches(model, iter(made), len(texts), "cpu")
    plain = pipeline.run_batches(model, pipeline.batches(flat, lengths, 4), len(texts), "cpu")
    assert np.allclose(padded, plain, atol=1e-5)  # the padding is masked out


def test_a_short_gpu_batch_gets_rows_of_one_token_up_to_the_row_step_and_their_vectors_are_dropped(
    fp32_model: LocalEmbedder,
) -> None:
    tokenizer = pipeline.fast_tokenizer(model_dir(), 256)
    texts = [f"sentence {i} " + "more " * i for i in range(11)]
    flat, lengths = pipeline.flat_token_ids(tokenizer, texts)
    made = list(pipeline.batches(flat, lengths, 6, row_multiple=4))
    assert [len(positions) for positions, _ in made] == [6, 5]
    assert [features["input_ids"].shape[0] for _, features in made] == [6, 6]  # 5 rows: 8 would pass the batch size
    made = list(pipeline.batches(flat, lengths, 8, row_multiple=4))
    assert [len(positions) for positions, _ in made] == [8, 3]
    (full, _), (short, features) = made
    assert features["input_ids"].shape[0] == 4
    assert features["attention_mask"].sum(dim=1).tolist() == [*lengths[short].tolist(), 1]
    assert features["input_ids"][3].tolist() == [0] * features["input_ids"].shape[1]
    model = fp32_model.load()
    padded = pipeline.run_batches(model, iter(made), len(texts), "cpu")
    plain = pipeline.run_batches(model, pipeline.batches(flat, lengths, 8), len(texts), "cpu")
    assert padded.shape == plain.shape and np.allclose(padded, plain, atol=1e-5)


def test_a_failure_while_preparing_batches_reaches_the_consumer() -> None:
    def broken() -> Iterator[pipeline.Batch]:
        yield np.zeros(1, dtype=np.int64), {}
        raise RuntimeError("tokenizer broke")

    items = pipeline.prefetch(broken())
    next(items)
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        next(items)


def test_the_overlapped_pipeline_gives_the_same_vectors_in_the_input_order(fp32_model: LocalEmbedder) -> None:
    texts = [f"text number {i} " + "word " * (i % 13) for i in range(40)]
    model = fp32_model.load()
    tokenizer = pipeline.fast_tokenizer(model_dir(), 256)
    plain = pipeline.encode(model, tokenizer, texts, 8, "cpu", overlap=False)
    overlapped = pipeline.encode(model, tokenizer, texts, 8, "cpu", overlap=True)
    assert np.allclose(plain, overlapped, atol=1e-6)
    one_by_one = np.vstack([pipeline.encode(model, tokenizer, [t], 1, "cpu") for t in texts[:5]])
    assert np.allclose(plain[:5], one_by_one, atol=1e-5)
    with pipeline.tokenizer_pool(model_dir(), 256, 1) as pool:  # tokenised in another process, in groups of 8
        pooled = pipeline.encode(model, tokenizer, texts, 4, "cpu", overlap=True, pool=pool)
    assert np.allclose(plain, pooled, atol=1e-5)


def test_lone_queries_take_onnx_runtime_with_the_fp32_models_vectors(tmp_path: Path, fp32_model: LocalEmbedder) -> None:
    embedder = LocalEmbedder(precision="bf16", query_precision="fp32", cache_dir=tmp_path)
    embedder.load()
    assert embedder.wait_for_query_path(timeout=300)
    assert list(tmp_path.glob("*.onnx"))
    texts = ["Vitamin D supplementation reduces the risk of fractures in the elderly.", "Paris"]
    lone = np.asarray(asyncio.run(embedder.embed_queries(texts)))
    reference = np.asarray(fp32_model._encode(texts))
    assert np.sum(lone * reference, axis=1).min() > 0.9999
    again = LocalEmbedder(precision="bf16", query_precision="fp32", cache_dir=tmp_path)  # the export, reused at once
    again.load()
    assert again._query_session is not None
    assert np.allclose(np.asarray(again._encode_lone(texts)), lone, atol=1e-6)


def test_lone_queries_default_to_the_int8_model_within_a_cosine_of_099_of_fp32(
    tmp_path: Path, fp32_model: LocalEmbedder
) -> None:
    embedder = LocalEmbedder(device="cpu", cache_dir=tmp_path)
    embedder.load()
    assert embedder.wait_for_query_path(timeout=300)
    assert embedder._query_int8 and len(list(tmp_path.glob("*-int8.onnx"))) == 1
    with (SHARED_DATA / "scifact" / "queries.jsonl").open() as lines:
        texts = [json.loads(line)["text"] for line, _ in zip(lines, range(60), strict=False)]
    lone = np.asarray([asyncio.run(embedder.embed_queries([text]))[0] for text in texts])
    cosines = np.sum(lone * np.asarray(fp32_model._encode(texts)), axis=1)
    assert cosines.min() >= 0.99 and cosines.mean() < 0.9999  # close to fp32, and not fp32 itself
    paired = np.asarray(asyncio.run(embedder.embed_queries(texts[:2])))  # a companion does not move a vector
    assert np.allclose(paired, lone[:2], atol=1e-6)


def test_quantization_leaves_the_first_transformer_layer_in_fp32(tmp_path: Path) -> None:
    import onnx

    embedder = LocalEmbedder(device="cpu", cache_dir=tmp_path)
    embedder.load()
    assert embedder.wait_for_query_path(timeout=300)
    (int8,) = tmp_path.glob("*-int8.onnx")
    quantized = {
        node.name
        for node in onnx.load(str(int8)).graph.node
        if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")
    }
    layers = {int(found.group(1)) for name in quantized if (found := pipeline.LAYER_NAME.search(name))}
    assert layers == {1, 2, 3, 4, 5}


def test_an_int8_model_further_than_the_cosine_bound_is_refused_and_fp32_kept(tmp_path: Path) -> None:
    embedder = LocalEmbedder(device="cpu", query_precision="fp32", cache_dir=tmp_path)
    model = embedder.load()
    assert embedder.wait_for_query_path(timeout=300)
    (export,) = tmp_path.glob("*.onnx")
    tokenizer = embedder._fast_tokenizer(model)
    assert pipeline.int8_session(embedder._query_session, export, tokenizer, min_cosine=1.0) is None
    assert not list(tmp_path.glob("*-int8.onnx"))
    (refused,) = tmp_path.glob("*.refused")
    assert "under 1.0" in refused.read_text()
    # remembered: the next start keeps fp32 without quantizing again
    assert pipeline.int8_session(embedder._query_session, export, tokenizer) is None


def test_the_torch_query_backend_answers_lone_queries_with_the_batch_path() -> None:
    embedder = LocalEmbedder(precision="fp32", query_backend="torch")
    embedder.load()
    assert not embedder.wait_for_query_path()
    assert np.allclose(embedder._encode_lone(["Paris"]), embedder._encode(["Paris"]), atol=1e-6)


def scifact_abstracts(count: int) -> list[str]:
    with (SHARED_DATA / "scifact" / "corpus.jsonl").open() as lines:
        return [json.loads(line)["text"] for line, _ in zip(lines, range(count), strict=False)]


def test_the_default_cpu_path_gives_the_vectors_of_the_fp32_model(fp32_model: LocalEmbedder) -> None:
    texts = scifact_abstracts(48)
    default = LocalEmbedder(device="cpu")  # the precision, batch size and workers a CPU server uses
    cosines = np.sum(np.asarray(default._encode(texts)) * np.asarray(fp32_model._encode(texts)), axis=1)
    assert len(cosines) == 48 and cosines.min() >= 0.99


def test_one_core_workers_give_the_same_vectors_as_batches_split_over_the_cores() -> None:
    texts = scifact_abstracts(40)
    side_by_side = LocalEmbedder(device="cpu", precision="fp32", batch_size=4, cpu_workers=2)
    split = LocalEmbedder(device="cpu", precision="fp32", batch_size=4, cpu_workers=1)
    split._model = side_by_side.load()
    assert side_by_side._cpu_workers(len(texts)) is not None and split._cpu_workers(len(texts)) is None
    assert np.allclose(side_by_side._encode(texts), split._encode(texts), atol=1e-5)


def test_a_worker_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu_workers"):
        LocalEmbedder(device="cpu", cpu_workers=0)


def test_the_onnx_export_is_kept_where_every_data_directory_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = RetrievalSettings(data_dir=tmp_path / "one")
    second = RetrievalSettings(data_dir=tmp_path / "two")
    assert model_cache_dir(first) == model_cache_dir(second) == tmp_path / "cache" / "plugkit"
    chosen = RetrievalSettings(data_dir=tmp_path / "one", model_cache_dir=tmp_path / "mine")
    assert model_cache_dir(chosen) == tmp_path / "mine"


def test_an_unwritable_user_cache_leaves_the_export_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    settings = RetrievalSettings(data_dir=tmp_path / "data")
    assert model_cache_dir(settings) == tmp_path / "data" / "models"


def test_batches_made_by_the_models_thread_give_the_vectors_a_prefetching_thread_gives(
    fp32_model: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = pipeline.fast_tokenizer(model_dir(), 256)
    texts = [f"sentence {i} " + "more " * i for i in range(11)]
    flat, lengths = pipeline.flat_token_ids(tokenizer, texts)
    model = fp32_model.load()
    ahead = pipeline.run_batches(model, pipeline.batches(flat, lengths, 4), len(texts), "cpu", overlap=True)
    monkeypatch.setattr(pipeline, "PREFETCH", 0)
    monkeypatch.setattr(pipeline, "prefetch", lambda *_args: pytest.fail("a prefetching thread was started"))
    inline = pipeline.run_batches(model, pipeline.batches(flat, lengths, 4), len(texts), "cpu", overlap=True)
    assert np.array_equal(ahead, inline)
