"""The embedding pipeline of the local model, kept free of plugkit's web dependencies (the chunk pool's worker
processes import it alone).

Throughput-first (`encode`; `encode_ids` for texts a `ChunkPool` already tokenised): texts tokenised a group at a time
by the fast tokenizer (Rust, on all cores), sorted by length and cut into batches padded to their longest text (on a
GPU rounded up to a multiple of GPU_WIDTH_MULTIPLE tokens, and a short last batch to a multiple of GPU_ROW_MULTIPLE
rows, so few shapes reach the model); on a GPU a thread prepares the next batches (each one packed int32 tensor in
pinned host memory) while the model runs as CUDA graphs (graphs.py: one replay a batch), their copies to the device
are asynchronous, and the vectors stay on the device until the end, so the host never waits for the device mid-way;
on a CPU, threads that each hold one core run whole batches side by side (`cpu_workers`). Latency-first
(`onnx_session`, `onnx_encode`): the model's transformer exported to ONNX once and run by ONNX Runtime on one thread,
mean-pooled and normalised in numpy, for a lone query; `int8_session` gives its int8 model (quantized once, kept only
when its vectors stay within a cosine of 0.99 of the fp32 export's).
"""

from __future__ import annotations

import functools
import os
import queue
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from plugkit.plugins.retrieval.child_process import frame, module_process, read_frame, serve
from plugkit.plugins.retrieval.embeddings.graphs import model_graphs

PREFETCH = 4  # batches prepared ahead of the model on a GPU, by a thread of their own (0: by the model's thread)
# On a GPU each new batch shape costs a graph capture, and eagerly a new attention plan (cuDNN's, about 6 ms of CPU a
# layer on an H200, with the GIL held: bench/results/gpu.json): widths rounded up to a multiple of this keep them few.
GPU_WIDTH_MULTIPLE = 32
# The same for the rows: the last batch of a call holds what is left over, a different count at every write of an
# ingest (a new plan in each of the 6 layers each time); rows of one padding token bring it up to a multiple of this.
GPU_ROW_MULTIPLE = 256
# On a GPU the forward pass runs as CUDA graphs (embeddings/graphs.py): one call a batch instead of hundreds, each
# waiting for the GIL inside an ingest.
GPU_GRAPHS = True
Batch = tuple[np.ndarray, dict[str, Any]]  # positions in the input, model features


def fast_tokenizer(model_path: Path, max_length: int) -> Any:
    """The model's fast tokenizer (tokenizer.json), truncating at `max_length`, unpadded."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def token_ids(tokenizer: Any, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
    """Each text's token ids (special tokens included) and their lengths; `encode_batch` runs on Rust threads and
    lets go of the GIL meanwhile."""
    encodings = tokenizer.encode_batch(texts)
    ids = [e.ids for e in encodings]
    return ids, np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))


def flat_token_ids(tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The token ids of `texts` end to end (int32) and each text's length: cheap to send between processes."""
    ids, lengths = token_ids(tokenizer, texts)
    return np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum())), lengths


def batches(
    flat: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    pin: bool = False,
    width_multiple: int = 1,
    row_multiple: int = 1,
    packed: bool = False,
) -> Iterator[Batch]:
    """Length-sorted batches (longest first) of texts given as `flat_token_ids`, each padded to its longest text
    (rounded up to `width_multiple`, never past the longest text of all), as torch tensors; positions index the
    texts. A batch of fewer rows than `batch_size` gets rows of one token (id 0) up to a multiple of `row_multiple`
    (never past `batch_size`): they follow the texts' rows, and `run_batches` drops their vectors. `packed`: the
    features as one int32 tensor, `{"packed": ...}`, each row's ids then its length (what graphs.unpack reads)."""
    import torch

    starts = np.cumsum(lengths) - lengths
    order = np.argsort(-lengths, kind="stable")
    longest = int(lengths[order[0]]) if len(order) else 0
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        widths = lengths[positions]
        width = min(-(-int(widths[0]) // width_multiple) * width_multiple, longest)
        rows = min(-(-len(positions) // row_multiple) * row_multiple, max(batch_size, len(positions)))
        row_lengths = np.concatenate([widths, np.ones(rows - len(positions), dtype=widths.dtype)])
        mask = np.arange(width) < row_lengths[:, None]
        # Where each row's ids lie in `flat`: its start, then consecutive (gathered at once, filled row by row).
        within = np.arange(int(widths.sum())) - np.repeat(np.cumsum(widths) - widths, widths)
        matrix = np.zeros((rows, width + int(packed)), dtype=np.int32 if packed else np.int64)
        matrix[: len(positions), :width][mask[: len(positions)]] = flat[np.repeat(starts[positions], widths) + within]
        if packed:
            matrix[:, width] = row_lengths
            tensor = torch.from_numpy(matrix)
            yield positions, {"packed": tensor.pin_memory() if pin else tensor}
            continue
        features = {
            "input_ids": torch.from_numpy(matrix),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
            "token_type_ids": torch.zeros(mask.shape, dtype=torch.int64),
        }
        if pin:
            features = {name: tensor.pin_memory() for name, tensor in features.items()}
        yield positions, features


def _gpu_shapes(on_gpu: bool) -> dict[str, Any]:
    """`batches`' options for the device: on a GPU few shapes, packed for the graphs when they are on."""
    if not on_gpu:
        return {}
    return {"width_multiple": GPU_WIDTH_MULTIPLE, "row_multiple": GPU_ROW_MULTIPLE, "packed": GPU_GRAPHS}


class TokenizerProcesses:
    """Processes that tokenise for `grouped_batches`: the tokenizer is Rust, but turning its output into arrays is
    Python, which one process cannot do fast enough to feed a GPU. Plain `python -m` subprocesses (child_process:
    never forked from a process holding a CUDA context, and never running the caller's main script again as
    multiprocessing's spawn does), started on first use, each given one group at a time; they end when this
    process closes them or exits."""

    def __init__(self, model_path: Path, max_length: int, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._init = frame((str(model_path), max_length))
        self.workers = workers
        self._processes: list[Any] = []
        self._lock = threading.Lock()

    def map(self, parts: list[list[str]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """`flat_token_ids` of each part, in order, the parts spread over the processes."""
        with self._lock:
            self._processes = [p for p in self._processes if p.poll() is None]
            while len(self._processes) < self.workers:
                process: Any = module_process(__name__)
                process.stdin.write(self._init)
                self._processes.append(process)
            owner: dict[int, Any] = {}  # part -> the process tokenising it (one part a process at a time)
            todo = iter(range(len(parts)))

            def give(process: Any) -> None:
                part = next(todo, None)
                if part is not None:
                    owner[part] = process
                    process.stdin.write(frame(parts[part]))
                    process.stdin.flush()

            try:
                for process in self._processes:
                    give(process)
                for part in range(len(parts)):
                    process = owner.pop(part)
                    answer = read_frame(process.stdout)
                    if answer is None or isinstance(answer, str):
                        raise RuntimeError(f"a tokenizer process failed: {answer or 'it ended'}")
                    give(process)
                    yield answer
            finally:  # stopped early: the answers still coming are read, so that the next map starts clean
                for process in owner.values():
                    read_frame(process.stdout)

    def close(self) -> None:
        with self._lock:
            for process in self._processes:
                process.stdin.close()
                process.wait()
                process.stdout.close()
            self._processes = []

    def __enter__(self) -> TokenizerProcesses:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def tokenizer_pool(model_path: Path, max_length: int, workers: int) -> TokenizerProcesses:
    """`workers` TokenizerProcesses of the model at `model_path`."""
    return TokenizerProcesses(model_path, max_length, workers)


def grouped_batches(
    tokenizer: Any, texts: list[str], batch_size: int, pin: bool = False, group: int | None = None, pool: Any = None
) -> Iterator[Batch]:
    """`batches` of `texts` tokenised a group at a time (`group` texts, default 8 batches), by the processes of
    `pool` when given (several groups at once), so that the model starts on the first group while the next ones
    are tokenised; positions index `texts`."""
    group = group or 8 * batch_size
    starts = range(0, len(texts), group)
    parts = [texts[start : start + group] for start in starts]
    if pool is not None:
        tokenised = pool.map(parts)
    else:
        tokenised = (flat_token_ids(tokenizer, part) for part in parts)
    for start, (flat, lengths) in zip(starts, tokenised, strict=True):
        for positions, features in batches(flat, lengths, batch_size, pin, **_gpu_shapes(pin)):
            yield positions + start, features


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


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # OpenMP's thread count is per calling thread: this worker runs its batches alone


def cpu_workers(threads: int) -> ThreadPoolExecutor:
    """Threads that each run whole batches on one core (`encode`'s `workers`), for the CPU."""
    return ThreadPoolExecutor(threads, thread_name_prefix="embed-cpu", initializer=_one_thread)


def _forward(model: Any, features: dict[str, Any]) -> Any:
    import torch

    with torch.inference_mode():  # per thread
        return model(features)["sentence_embedding"]


def encode(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    batch_size: int,
    device: str,
    overlap: bool | None = None,
    pool: Any = None,
    workers: ThreadPoolExecutor | None = None,
) -> np.ndarray:
    """Unit vectors (float32, one row per text, in order) of a sentence-transformers `model` on `device`.
    `overlap` (default: on a GPU) prepares batches in a thread ahead of the model; `pool` (a `tokenizer_pool`)
    tokenises in processes; `workers` (a `cpu_workers` pool, CPU only) runs the batches side by side, one per core,
    instead of splitting each batch over the cores: no core then waits at a barrier for another, which on a busy
    machine wasted most of the time (bench/upload.py)."""
    if not texts:
        return np.zeros((0, dimension_of(model)), dtype=np.float32)
    items = grouped_batches(tokenizer, texts, batch_size, pin=device != "cpu", pool=pool)
    return run_batches(model, items, len(texts), device, overlap, workers)


def encode_ids(
    model: Any,
    flat: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    device: str,
    workers: ThreadPoolExecutor | None = None,
) -> np.ndarray:
    """`encode` of texts already tokenised (`flat_token_ids`: ids end to end, special tokens included, and each
    text's length): the same groups and batches, so the same vectors, as `encode` of the texts."""
    if not len(lengths):
        return np.zeros((0, dimension_of(model)), dtype=np.float32)
    group = 8 * batch_size  # as grouped_batches
    ends = np.cumsum(lengths)

    def items() -> Iterator[Batch]:
        for start in range(0, len(lengths), group):
            stop = min(start + group, len(lengths))
            first, last = int(ends[start] - lengths[start]), int(ends[stop - 1])
            on_gpu = device != "cpu"
            for positions, features in batches(
                flat[first:last], lengths[start:stop], batch_size, on_gpu, **_gpu_shapes(on_gpu)
            ):
                yield positions + start, features

    return run_batches(model, items(), len(lengths), device, None, workers)


def run_batches(
    model: Any,
    items: Iterator[Batch],
    count: int,
    device: str,
    overlap: bool | None = None,
    workers: ThreadPoolExecutor | None = None,
) -> np.ndarray:
    """The model over `items` (positions, features) on `device`: `count` unit vectors in the positions' order."""
    import torch

    on_gpu = device != "cpu"
    if on_gpu if overlap is None else overlap:
        items = prefetch(items, PREFETCH) if PREFETCH > 0 else items
    order: list[np.ndarray] = []
    done: list[Any] = []
    with torch.inference_mode():
        if workers is not None and not on_gpu:
            listed = list(items)  # tokenising is a small part of the time on a CPU
            done = list(workers.map(lambda item: _forward(model, item[1])[: len(item[0])], listed))
            order = [positions for positions, _ in listed]
        else:
            for positions, features in items:
                # Pinned memory: the copies are queued without waiting, and nothing here waits on the device
                # until the end, so the host keeps the next batches coming while the model runs. A packed batch
                # (`_gpu_shapes`: GPU_GRAPHS on a GPU) goes to the model's CUDA graphs.
                if "packed" in features:
                    vectors = model_graphs(model, device)(features["packed"])
                else:
                    features = {name: tensor.to(device, non_blocking=on_gpu) for name, tensor in features.items()}
                    vectors = model(features)["sentence_embedding"]
                done.append(vectors[: len(positions)])  # rows that pad the batch go
                order.append(positions)
        # Normalised in float32 whatever the model's precision (bf16/fp16 norms are only good to about 1e-3).
        vectors = torch.nn.functional.normalize(torch.cat(done).float(), dim=1).cpu().numpy()
    out = np.empty((count, vectors.shape[1]), dtype=vectors.dtype)
    out[np.concatenate(order)] = vectors
    return out


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


INT8_MIN_COSINE = 0.99  # the int8 query model is kept only where every probe's vector is this close to fp32's
PROBE_TEXTS = (
    "Vitamin D supplementation reduces the risk of fractures in the elderly.",
    "Paris",
    "what is the capital of France?",
    "0-dimensional biomaterials lack inductive properties.",
    "Le traitement précoce réduit la mortalité de 30 % chez les patients atteints de sepsis.",
    "CRISPR-Cas9 off-target effects in human embryos (n=12, p<0.05)",
)
# A transformer layer's number in the exported graph's node names ("/inner/encoder/layer.3/attention/...").
LAYER_NAME = re.compile(r"layer\.(\d+)/")


def quantize_onnx(source: Path, target: Path) -> None:
    """The model at `source` with int8 weights (dynamic quantization, one scale per output channel) in the linear
    layers of every transformer layer but the first, at `target` (atomically). The first layer reads the
    embeddings, whose outliers int8 serves worst: kept in fp32 it lifts the worst cosine to fp32 over SciFact's 809
    training queries from 0.987 to 0.992 (bench/results/retrieval.json), and their dense nDCG@10 from 0.6804 (all
    layers int8) to 0.6866 (fp32: 0.6858). Raises ValueError when the graph names no layers."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    layers = {
        node.name: int(found.group(1))
        for node in graph.node
        if node.op_type == "MatMul" and node.input[1] in weights and (found := LAYER_NAME.search(node.name))
    }
    if len(set(layers.values())) < 2:
        raise ValueError(f"{source.name}: no transformer layers named in the graph")
    first = min(layers.values())
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    quantize_dynamic(
        str(source),
        str(tmp),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=[name for name, layer in layers.items() if layer != first],
    )
    os.replace(tmp, target)


def onnx_session(model: Any, path: Path) -> Any:
    """An ONNX Runtime session (one thread) over the model exported at `path`, exporting it first if missing."""
    if not path.exists():
        export_onnx(model, path)
    return _session(path)


def int8_session(fp32: Any, path: Path, tokenizer: Any, min_cosine: float = INT8_MIN_COSINE) -> Any | None:
    """A session over the int8 model (`quantize_onnx`) of the fp32 export at `path`, made once beside it and kept
    only when its vectors of PROBE_TEXTS are within `min_cosine` of `fp32`'s (the session of `path`); None when the
    model is refused (remembered in a `.refused` file beside it, so the next start does not try again)."""
    target = path.with_name(f"{path.stem}-int8.onnx")
    refused = target.with_suffix(".refused")
    if refused.exists():
        return None
    if target.exists():
        return _session(target)
    try:
        quantize_onnx(path, target)
        session = _session(target)
    except ValueError as exc:
        refused.write_text(f"{exc}\n")
        return None
    worst = min(
        float(np.dot(onnx_encode(session, tokenizer, [text])[0], onnx_encode(fp32, tokenizer, [text])[0]))
        for text in PROBE_TEXTS
    )
    if worst < min_cosine:
        target.unlink()
        refused.write_text(f"int8 vectors within a cosine of {worst:.4f} of fp32, under {min_cosine}\n")
        return None
    return session


def _session(path: Path) -> Any:
    import onnxruntime as ort

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


def main() -> None:
    """A tokenizer process: the first message is the model's folder and the tokens it reads, each next one a group of
    texts, answered with their `flat_token_ids`."""
    serve(lambda arguments: functools.partial(flat_token_ids, fast_tokenizer(Path(arguments[0]), arguments[1])))


if __name__ == "__main__":
    main()
