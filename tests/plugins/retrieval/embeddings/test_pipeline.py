"""The embedding pipeline's tokenizer processes: the same ids as tokenising here, in order, over several processes,
usable from a script without a main guard, and ready again after a map stopped early."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from plugkit.plugins.retrieval.embeddings import pipeline
from plugkit.plugins.retrieval.embeddings.local import model_dir

PARTS = [[f"Part {p}, text {t}: " + "several plain words " * (4 * t) for t in range(9)] for p in range(7)]


@pytest.fixture(scope="module")
def processes() -> Iterator[pipeline.TokenizerProcesses]:
    with pipeline.tokenizer_pool(model_dir(), 64, 2) as pool:
        yield pool


def test_each_part_comes_back_tokenised_as_here_and_in_order(processes: pipeline.TokenizerProcesses) -> None:
    here = pipeline.fast_tokenizer(model_dir(), 64)
    answers = list(processes.map(PARTS))
    assert len(answers) == len(PARTS)
    for part, (flat, lengths) in zip(PARTS, answers, strict=True):
        expected_flat, expected_lengths = pipeline.flat_token_ids(here, part)
        assert np.array_equal(flat, expected_flat) and np.array_equal(lengths, expected_lengths)
    assert max(lengths.max() for _, lengths in answers) == 64  # truncated as the model reads


def test_a_map_stopped_early_leaves_the_processes_ready_for_the_next(processes: pipeline.TokenizerProcesses) -> None:
    first = processes.map(PARTS)
    next(first)
    first.close()  # the other answers on their way are read and dropped
    again = list(processes.map(PARTS[:3]))
    here = pipeline.fast_tokenizer(model_dir(), 64)
    assert [lengths.tolist() for _, lengths in again] == [
        pipeline.flat_token_ids(here, part)[1].tolist() for part in PARTS[:3]
    ]


def test_a_script_without_a_main_guard_can_tokenise_in_the_processes(tmp_path: Path) -> None:
    script = tmp_path / "plain_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from plugkit.plugins.retrieval.embeddings import pipeline

            print("script body ran")
            with pipeline.tokenizer_pool(Path({str(model_dir())!r}), 64, 2) as pool:
                print(sum(len(lengths) for _, lengths in pool.map([["One text.", "Two."]] * 5)))
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["script", "body", "ran", "10"]
