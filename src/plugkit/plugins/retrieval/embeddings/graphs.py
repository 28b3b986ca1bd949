"""The model's forward pass on a GPU as CUDA graphs: captured once per batch shape, then replayed by one call.

A forward pass of the eager model is a few hundred operator calls, each made by Python with the GIL held. Alone, the
GPU stays ahead of them; inside `plugkit ingest` the same thread shares the GIL with the store's writes, the chunk
pool's readers and the batches being prepared, and waits for it between calls: the model ran about a third of its
speed alone there (bench/results/gpu.json). A replay is one call whatever the model's depth. Shapes are few (the
pipeline rounds a batch's width and rows up: `GPU_WIDTH_MULTIPLE`, `GPU_ROW_MULTIPLE`), each captured the first time
it is seen, after one eager pass of it (the libraries' lazy set-up and the attention plans happen outside the capture).
The graphs share one memory pool and are replayed one at a time on the stream that runs them, each output copied out
before the next replay; a capture that fails leaves the model to the eager path from then on.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

log = logging.getLogger(__name__)
MAX_GRAPHS = 96  # shapes kept (8 widths x 8 row counts at the defaults); others run eagerly
_GRAPHS: weakref.WeakKeyDictionary[Any, ModelGraphs] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def unpack(packed: Any) -> dict[str, Any]:
    """The model's features from a packed batch (`pipeline.batches(packed=True)`: each row's token ids, then its
    length): the ids, the attention mask of the first `length` tokens, token types 0."""
    import torch

    ids = packed[:, :-1].long()
    mask = torch.arange(ids.shape[1], device=packed.device) < packed[:, -1:]
    return {"input_ids": ids, "attention_mask": mask.long(), "token_type_ids": torch.zeros_like(ids)}


class ModelGraphs:
    """A sentence-transformers model's forward pass, one CUDA graph per shape of its packed input: one int32 host
    tensor a batch (`pipeline.batches(packed=True)`), so one copy to the device, the features made on the device
    inside the graph."""

    def __init__(self, model: Any, device: Any) -> None:
        self.model = model
        self.device = device
        self.graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}  # shape -> (graph, its input, its output)
        self.pool: Any = None  # the graphs' shared memory pool, from the first capture on
        self.failed: str | None = None  # why capturing stopped, once it has
        self._lock = threading.Lock()

    def forward(self, packed: Any) -> Any:
        """The model on a packed batch already on the device (eagerly, or what a capture records)."""
        return self.model(unpack(packed))["sentence_embedding"]

    def __call__(self, packed: Any) -> Any:
        """The sentence embeddings (on the device) of a packed batch (a host tensor, pinned: copied without
        waiting). The rows are the caller's until its next call: copy them out before."""
        with self._lock:
            shape = tuple(packed.shape)
            entry = self.graphs.get(shape)
            if entry is None and self.failed is None and len(self.graphs) < MAX_GRAPHS:
                entry = self._capture(shape, packed)
            if entry is None:  # the eager model
                return self.forward(packed.to(self.device, non_blocking=True))
            graph, static, output = entry
            static.copy_(packed, non_blocking=True)
            graph.replay()
            return output.clone()  # the next replay of this shape writes over `output`

    def _capture(self, shape: tuple[int, ...], packed: Any) -> tuple[Any, Any, Any] | None:
        import torch

        static = packed.to(self.device, non_blocking=True)
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]  # a capture needs its own stream
        side.wait_stream(current)
        try:
            with torch.cuda.stream(side):
                self.forward(static)  # the eager pass first: plans and lazy set-up outside the capture
                graph = torch.cuda.CUDAGraph()
                # Not torch.cuda.graph(): it synchronises the device and empties the allocators' caches (pinned
                # host memory included) at every capture. Other threads (the prefetch's pinned copies, an index's
                # k-means) may go on using CUDA meanwhile: only this thread's calls are checked.
                graph.capture_begin(pool=self.pool, capture_error_mode="thread_local")
                try:
                    output = self.forward(static)
                finally:
                    graph.capture_end()
            current.wait_stream(side)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be captured runs eagerly
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("the model runs without CUDA graphs: capturing a batch of %s failed (%s)", shape, self.failed)
            return None
        self.pool = graph.pool()
        entry = (graph, static, output)
        self.graphs[shape] = entry
        return entry


def model_graphs(model: Any, device: Any) -> ModelGraphs:
    """The graphs of `model` on `device` (one set a model, kept while the model lives)."""
    with _LOCK:
        graphs = _GRAPHS.get(model)
        if graphs is None:
            graphs = _GRAPHS[model] = ModelGraphs(model, device)
        return graphs
