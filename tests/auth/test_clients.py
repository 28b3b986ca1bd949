"""Redirect URI registration and matching."""

from __future__ import annotations

import pytest

from plugkit.auth.clients import DEFAULT_REDIRECT_URIS, check_redirect_uri, redirect_uri_allowed

DEFAULTS = list(DEFAULT_REDIRECT_URIS)


@pytest.mark.parametrize(
    "uri",
    [
        "https://chat.openai.com/aip/plugin-8a1b2c/oauth/callback",
        "https://chat.openai.com/aip/g-123/oauth/callback",
        "https://chatgpt.com/aip/g-0f3c9d2e/oauth/callback",
    ],
)
def test_the_host_callback_forms_match_the_default_registration(uri: str) -> None:
    assert redirect_uri_allowed(uri, DEFAULTS)


@pytest.mark.parametrize(
    "uri",
    [
        "https://chat.openai.com/aip//oauth/callback",
        "https://chat.openai.com/aip/a/b/oauth/callback",
        "https://chat.openai.com/aip/x/oauth/callback?next=https://evil.example",
        "https://chat.openai.com.evil.example/aip/x/oauth/callback",
        "http://chat.openai.com/aip/x/oauth/callback",
        "https://chatgpt.com/aip/plugin-1/oauth/callback",
        "https://chatgpt.com/aip/g-1/oauth/callback#fragment",
    ],
)
def test_lookalike_redirect_uris_do_not_match(uri: str) -> None:
    assert not redirect_uri_allowed(uri, DEFAULTS)


def test_an_exact_registration_matches_only_itself() -> None:
    registered = ["http://127.0.0.1:8080/callback"]
    assert redirect_uri_allowed("http://127.0.0.1:8080/callback", registered)
    assert not redirect_uri_allowed("http://127.0.0.1:8080/callback/", registered)


@pytest.mark.parametrize(
    "uri", ["not a url", "ftp://example.com/cb", "https://example.com/cb#x", "https://*.example.com/cb", "/relative"]
)
def test_an_unusable_redirect_uri_cannot_be_registered(uri: str) -> None:
    with pytest.raises(ValueError, match="redirect URI"):
        check_redirect_uri(uri)
