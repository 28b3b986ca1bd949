"""The embedding pipeline of the local model, kept free of plugkit's web dependencies (bench/gpu.py imports it alone).

Throughput-first (`encode`): every text tokenised at once by the fast tokenizer (Rust, on all cores), sorted by
length and cut into batches padded only to their longest text; on a GPU a thread prepares the next batches (padding,
pinned host memory) while the model runs, their copies to the device are asynchronous, the vectors stay on the device
until the end. Latency-first (`onnx_session`, `onnx_encode`): the model's transformer exported to ONNX once and run
by ONNX Runtime on one thread, mean-pooled and normalised in numpy, for a lone query.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

PREFETCH = 4  # batches prepared ahead of the model on a GPU
Batch = tuple[np.ndarray, dict[str, Any]]  # positions in the input, model features


def fast_tokenizer(model_path: Path, max_length: int) -> Any:
    """The model's fast tokenizer (tokenizer.json), truncating at `max_length`, unpadded."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def token_ids(tokenizer: Any, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
    """Each text's token ids (special tokens included) and their lengths; `encode_batch` runs on Rust threads."""
    encodings = tokenizer.encode_batch(texts)
    ids = [e.ids for e in encodings]
    return ids, np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))


def batches(ids: list[list[int]], lengths: np.ndarray, batch_size: int, pin: bool = False) -> Iterator[Batch]:
    """Length-sorted batches (longest first), each padded to its longest text, as torch tensors."""
    import torch

    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        widths = lengths[positions]
        matrix = np.zeros((len(positions), int(widths[0])), dtype=np.int64)
        for row, position in enumerate(positions.tolist()):
            matrix[row, : widths[row]] = ids[position]
        mask = (np.arange(matrix.shape[1]) < widths[:, None]).astype(np.int64)
        features = {
            "input_ids": torch.from_numpy(matrix),
            "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.zeros_like(torch.from_numpy(matrix)),
        }
        if pin:
            features = {name: tensor.pin_memory() for name, tensor in features.items()}
        yield positions, features


def prefetch(items: Iterator[Batch], depth: int = PREFETCH) -> Iterator[Batch]:
    """`items` produced by a thread up to `depth` ahead of the consumer (an error is raised in the consumer)."""
    done = object()
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for item in items:
                ahead.put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            ahead.put(exc)
        ahead.put(done)

    threading.Thread(target=produce, daemon=True, name="embed-prefetch").start()
    while (item := ahead.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def dimension_of(model: Any) -> int:
    """A sentence-transformers model's output dimension (the method was renamed in version 6)."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(method())


def encode(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int, device: str, overlap: bool | None = None
) -> np.ndarray:
    """Unit vectors (float32, one row per text, in order) of a sentence-transformers `model` on `device`.
    `overlap` (default: on a GPU) prepares batches in a thread ahead of the model."""
    import torch

    if not texts:
        return np.zeros((0, dimension_of(model)), dtype=np.float32)
    ids, lengths = token_ids(tokenizer, texts)
    on_gpu = device != "cpu"
    items = batches(ids, lengths, batch_size, pin=on_gpu)
    if on_gpu if overlap is None else overlap:
        items = prefetch(items)
    out = torch.empty((len(texts), dimension_of(model)), dtype=torch.float32, device=device)
    with torch.inference_mode():
        for positions, features in items:
            features = {name: tensor.to(device, non_blocking=on_gpu) for name, tensor in features.items()}
            vectors = model(features)["sentence_embedding"]
            out[torch.from_numpy(positions).to(device)] = vectors.float()
        # Normalised in float32 whatever the model's precision (bf16/fp16 norms are only good to about 1e-3).
        out = torch.nn.functional.normalize(out, dim=1)
        return out.cpu().numpy()


# -- the latency-first path -------------------------------------------------------------------------------------


def _check_mean_pooling(model: Any) -> None:
    modules = list(model)
    pooling = modules[1] if len(modules) > 1 else None
    config = pooling.get_config_dict() if pooling is not None and hasattr(pooling, "get_config_dict") else {}
    mean = config.get("pooling_mode") == "mean" or (  # sentence-transformers 6, or the flags of earlier versions
        config.get("pooling_mode_mean_tokens")
        and not any(config.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens"))
    )
    if not mean:
        raise ValueError("the ONNX query path handles mean-pooled models only")


def export_onnx(model: Any, path: Path) -> None:
    """The transformer of a (fp32) sentence-transformers model as ONNX at `path` (atomically)."""
    import warnings

    import torch

    _check_mean_pooling(model)
    transformer = model[0].auto_model

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # A padded example, so that the traced graph handles masks of any batch and length.
    example = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 2023, 102, 0, 0, 0]])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden().eval(),
            (example, (example > 0).long(), torch.zeros_like(example)),
            str(tmp),
            input_names=names,
            output_names=["hidden"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "hidden"]},
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, path)


def onnx_session(model: Any, path: Path) -> Any:
    """An ONNX Runtime session (one thread) over the model exported at `path`, exporting it first if missing."""
    import onnxruntime as ort

    if not path.exists():
        export_onnx(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_encode(session: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Unit vectors of `texts` from an ONNX session of `onnx_session`: mean pooling over the tokens, normalised."""
    ids, lengths = token_ids(tokenizer, texts)
    matrix = np.zeros((len(ids), int(lengths.max())), dtype=np.int64)
    for row, row_ids in enumerate(ids):
        matrix[row, : len(row_ids)] = row_ids
    mask = (np.arange(matrix.shape[1]) < lengths[:, None]).astype(np.int64)
    (hidden,) = session.run(None, {"input_ids": matrix, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)})
    pooled = (hidden * mask[..., None]).sum(axis=1) / lengths[:, None]
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.where(norms > 0, norms, 1.0)).astype(np.float32)  # type: ignore[no-any-return]
