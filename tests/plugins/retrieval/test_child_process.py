"""The framing of the messages between plugkit and its helper processes."""

from __future__ import annotations

import io

import numpy as np

from plugkit.plugins.retrieval.child_process import frame, read_frame


def test_framed_messages_read_back_one_by_one_and_a_cut_stream_reads_as_its_end() -> None:
    values = [["a text", "another"], (np.arange(5, dtype=np.int32), 7), "an error"]
    stream = io.BytesIO(b"".join(frame(v) for v in values))
    first, (ids, seven), error = (read_frame(stream) for _ in values)
    assert first == values[0] and ids.tolist() == [0, 1, 2, 3, 4] and seven == 7 and error == "an error"
    assert read_frame(stream) is None
    cut = frame(["a text"])[:-1]
    assert read_frame(io.BytesIO(cut)) is None and read_frame(io.BytesIO(cut[:3])) is None
