import pytest
import torch

from plugkit.plugins.retrieval.device import resolve_device


def test_auto_means_cuda_when_torch_sees_one_else_cpu() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cpu_and_cuda_are_taken_as_they_are_and_anything_else_is_refused() -> None:
    assert (resolve_device("cpu"), resolve_device("cuda")) == ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda, not 'tpu'"):
        resolve_device("tpu")
