"""The offline token estimate of the text a model reads."""

from __future__ import annotations

from plugkit.host.tokens import approximate_tokens


def test_token_estimate_grows_with_the_text_and_counts_each_symbol() -> None:
    assert approximate_tokens("") == 0
    assert approximate_tokens("hello") == 1
    assert approximate_tokens("hello world") == 2
    assert approximate_tokens("internationalization") == 4  # 20 letters: one token per six
    assert approximate_tokens('{"a": 1}') == 7  # { " a " : 1 } (the space joins the digit group)
    assert approximate_tokens("12345678") == 3
