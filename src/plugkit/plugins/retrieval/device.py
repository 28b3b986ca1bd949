"""Which device the retrieval plugin's torch work runs on: the local model, and the IVF index's k-means."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """ "auto": cuda when torch sees a CUDA device, else cpu; "cpu" and "cuda" as they are."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"
