"""Token counts of the text a model reads (tool definitions, prompts), offline and approximate.

tiktoken, the exact counter, downloads its encodings on first use, which a server without the internet cannot do,
so counts here are estimated from a pre-tokenisation like the GPT tokenisers' own: a run of letters (with its
leading space) costs one token per six letters, a group of up to three digits one, every other symbol one, a run
of blank space one. Treat the figures as estimates for comparing tools, not as a bill."""

from __future__ import annotations

import math
import re

_PIECES = re.compile(r" ?[A-Za-z]+| ?\d{1,3}|\s+|[^\sA-Za-z\d]")
METHOD = "approximate: letters/6, digit groups of 3, one per symbol (tiktoken needs a download)"


def approximate_tokens(text: str) -> int:
    """An offline estimate of the tokens of `text` (see the module docstring)."""
    total = 0
    for piece in _PIECES.findall(text):
        word = piece.strip()
        total += max(1, math.ceil(len(word) / 6)) if word.isalpha() else 1
    return total
