from __future__ import annotations

import json
from functools import lru_cache
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from plugkit.plugins.retrieval import chunking
from plugkit.plugins.retrieval.chunking import HFTokenizer, Tokens, chunk_id, chunk_text
from tests.helpers import SHARED_DATA

SENTENCES = [f"Sentence number {i} talks about proteins, cells and the immune response." for i in range(60)]
TEXT = " ".join(SENTENCES)


def test_no_chunk_is_longer_than_the_chunk_size_in_model_tokens(tokenizer: HFTokenizer) -> None:
    chunks = chunk_text(TEXT, tokenizer, chunk_tokens=50, overlap=0)
    assert len(chunks) > 5
    assert all(len(tokenizer.token_spans(c.text)) <= 50 for c in chunks)


def test_chunks_end_at_sentence_ends_when_sentences_fit(tokenizer: HFTokenizer) -> None:
    chunks = chunk_text(TEXT, tokenizer, chunk_tokens=50, overlap=0)
    assert all(c.text.endswith(".") for c in chunks)


def test_chunks_without_overlap_cover_the_text_in_order_once(tokenizer: HFTokenizer) -> None:
    chunks = chunk_text(TEXT, tokenizer, chunk_tokens=40, overlap=0)
    assert " ".join(c.text for c in chunks) == TEXT


def test_overlap_repeats_the_end_of_the_previous_chunk(tokenizer: HFTokenizer) -> None:
    chunks = chunk_text(TEXT, tokenizer, chunk_tokens=60, overlap=20)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        assert current.start < previous.end
        assert previous.text[-10:] in TEXT[current.start : current.end]


def test_a_sentence_longer_than_a_chunk_is_cut_between_tokens(tokenizer: HFTokenizer) -> None:
    long_sentence = " ".join(["word"] * 500)
    chunks = chunk_text(long_sentence, tokenizer, chunk_tokens=100, overlap=0)
    assert [c.tokens for c in chunks] == [100] * 5


def test_the_last_chunk_is_never_oversized_even_for_long_documents(tokenizer: HFTokenizer) -> None:
    chunks = chunk_text(" ".join(SENTENCES * 20), tokenizer, chunk_tokens=30, overlap=5)
    assert max(c.tokens for c in chunks) <= 30
    assert chunks[-1].tokens <= 30


def test_empty_and_blank_text_make_no_chunks(tokenizer: HFTokenizer) -> None:
    assert chunk_text("", tokenizer) == []
    assert chunk_text("  \n\n ", tokenizer) == []


def test_overlap_must_be_smaller_than_the_chunk(tokenizer: HFTokenizer) -> None:
    with pytest.raises(ValueError):
        chunk_text(TEXT, tokenizer, chunk_tokens=10, overlap=10)


def test_chunk_ids_are_document_id_and_position() -> None:
    assert chunk_id("doc-7", 0) == "doc-7_0"
    assert chunk_id("doc-7", 12) == "doc-7_12"


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=600),
    size=st.integers(min_value=8, max_value=64),
)
def test_every_chunk_fits_and_comes_from_the_text(tokenizer: HFTokenizer, text: str, size: int) -> None:
    for chunk in chunk_text(text, tokenizer, chunk_tokens=size, overlap=size // 4):
        assert chunk.tokens <= size
        assert chunk.text and chunk.text in text


@lru_cache(maxsize=1)
def _whole_of(path: str) -> Tokenizer:
    whole = Tokenizer.from_file(path)
    whole.no_truncation()
    whole.no_padding()
    return whole


def _whole(tokenizer: HFTokenizer) -> Tokenizer:
    """The same tokenizer file, used whole (its normalizer always runs)."""
    return _whole_of(str(tokenizer.path))


def _same_encoding(a: object, b: object) -> bool:
    return all(getattr(a, key) == getattr(b, key) for key in ("ids", "offsets", "word_ids"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_an_ascii_text_encodes_as_the_whole_tokenizer_encodes_it(tokenizer: HFTokenizer, text: str) -> None:
    """Control characters included: those take the whole tokenizer, the rest the copy without its normalizer."""
    assert _same_encoding(tokenizer.encode(text), _whole(tokenizer).encode(text, add_special_tokens=False))


def test_scifact_abstracts_encode_as_the_whole_tokenizer_encodes_them(tokenizer: HFTokenizer) -> None:
    whole = _whole(tokenizer)
    with (SHARED_DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        texts = [f"{row['title']}\n{row['text']}" for row in map(json.loads, islice(fh, 400))]
    assert tokenizer._plain is not None  # MiniLM's normalizer is BERT's: its ASCII texts take the copy without it
    assert sum(t.isascii() for t in texts) > 200 and sum(not t.isascii() for t in texts) > 20  # both paths taken
    assert all(_same_encoding(tokenizer.encode(t), whole.encode(t, add_special_tokens=False)) for t in texts)
    # Tokenised from their words' pieces (the runs outside ASCII by the tokenizer), not by the tokenizer whole.
    assert all(isinstance(tokenizer.encode(t), Tokens) for t in texts)
    mixed = "Ünïcode and ASCII\x01 control, TAB\tand CR\r\nLF. 東京"
    assert _same_encoding(tokenizer.encode(mixed), whole.encode(mixed, add_special_tokens=False))


MIXED = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["word", "Cell", " ", "\n", "\t", "\r\n", "é", "naïve", "β-cells", "東京", "\u0301", " \u0301x"]),
    st.sampled_from(["\u00a0", "\u3000", "\x85", "ﬁ", "İ", "ß", "µm", "—", "“quoted”", "\ufeff", "\u200b", "a\u0301"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(MIXED, max_size=30))
def test_any_text_with_characters_outside_ascii_encodes_as_the_whole_tokenizer_encodes_it(
    tokenizer: HFTokenizer, parts: list[str]
) -> None:
    """Accents, combining marks after spaces, other whitespace, CJK, ligatures and letters that lowercase longer:
    the runs that hold them are tokenised alone, the ASCII between them from its words' pieces."""
    text = "".join(parts)
    assert _same_encoding(tokenizer.encode(text), _whole(tokenizer).encode(text, add_special_tokens=False))


WORDS = st.sampled_from(["The", "cell", "cells", "proliferation", "x", "42", "3.5%", "IL-6", "(n=12)", "p<0.05"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(WORDS, st.sampled_from([" ", "  ", "\n", "\t", "\r\n", "", ". "])), max_size=40))
def test_texts_made_of_known_words_encode_as_the_whole_tokenizer_encodes_them(
    tokenizer: HFTokenizer, parts: list[tuple[str, str]]
) -> None:
    """Words met before are taken from the tokenizer's cache of pieces, wherever they stand."""
    text = "".join(word + space for word, space in parts)
    assert _same_encoding(tokenizer.encode(text), _whole(tokenizer).encode(text, add_special_tokens=False))


def test_a_word_too_long_for_wordpiece_and_a_full_cache_still_encode_as_the_whole_tokenizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokenizer = HFTokenizer(chunking.minilm_tokenizer().path)  # a cache of its own
    monkeypatch.setattr(chunking, "WORD_CACHE", 3)
    whole = _whole(tokenizer)
    texts = ["Short words first.", "a" * 101 + " then more words", "Again: short words, and new ones."]
    for text in texts:
        assert _same_encoding(tokenizer.encode(text), whole.encode(text, add_special_tokens=False))
    assert not isinstance(tokenizer.encode(texts[1]), Tokens)  # [UNK]: the tokenizer's own encoding
    assert len(tokenizer._pieces) <= 3 + len(texts[2].split()) + 2  # cleared when full
