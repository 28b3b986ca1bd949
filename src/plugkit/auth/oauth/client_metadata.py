"""Client ID metadata documents (the MCP authorization spec's preferred registration): a `client_id` that is an
https URL names a JSON document, fetched here, that describes the client. Fetching a URL a stranger chose is
guarded: https only, 5 s, 5 KB, no redirect to another host, and never a private, loopback or link-local address
(the address checked is the one connected to, so a DNS answer cannot change between check and use)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import time
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from plugkit.auth.clients import Client
from plugkit.auth.oauth.errors import InvalidClientMetadata, InvalidRedirectUri
from plugkit.auth.oauth.registration import MAX_NAME_CHARS, MAX_REDIRECT_URIS, check_registered_redirect_uri

TIMEOUT_S = 5.0
MAX_BYTES = 5 * 1024
MAX_REDIRECTS = 3
CACHE_S = (60, 300, 3600)  # the least, the default and the most seconds a document is kept
CACHE_ENTRIES = 1000
_MAX_AGE = re.compile(r"max-age=(\d+)")


class ClientMetadataError(ValueError):
    """The client ID metadata document cannot be used; the message says why, for the person signing in."""


def looks_like_metadata_url(client_id: str) -> bool:
    """Whether a client_id names a metadata document rather than a stored client."""
    return client_id.startswith(("https://", "http://"))


def _check_url(url: str, *, allow_http: bool) -> httpx.URL:
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise ClientMetadataError("a client ID metadata document must be served over https")
    if parts.path in ("", "/") or parts.fragment or "#" in url or parts.username or parts.password:
        raise ClientMetadataError("a client ID URL needs a path and no fragment or user information")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise ClientMetadataError("a client ID URL must not contain . or .. path segments")
    return httpx.URL(url)


async def _public_address(host: str, port: int, *, allow_private: bool) -> str:
    """An address of `host` to connect to; refuses a host any of whose addresses is not a public one."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ClientMetadataError(f"the client's host {host} does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise ClientMetadataError(f"the client's host {host} does not resolve")
    if not allow_private and not all(a.is_global and not a.is_multicast for a in addresses):
        raise ClientMetadataError(f"the client's host {host} is a private, loopback or link-local address")
    return str(addresses[0])


class ClientMetadataDocuments:
    """Fetches, checks and caches client ID metadata documents."""

    def __init__(self, *, allow_private: bool = False, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.allow_private = allow_private
        self.transport = transport
        self._cache: dict[str, tuple[float, Client]] = {}

    async def resolve(self, client_id: str) -> Client:
        """The client the document at `client_id` describes; ClientMetadataError when it cannot be used."""
        cached = self._cache.get(client_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            with anyio.fail_after(TIMEOUT_S):
                body, max_age = await self._fetch(client_id)
        except TimeoutError:
            raise ClientMetadataError(f"the client's metadata document did not arrive within {TIMEOUT_S:g} s") from None
        except httpx.HTTPError as exc:
            raise ClientMetadataError(
                f"the client's metadata document could not be fetched ({type(exc).__name__})"
            ) from None
        client = self._parse(client_id, body)
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        keep = min(max(max_age if max_age is not None else CACHE_S[1], CACHE_S[0]), CACHE_S[2])
        self._cache[client_id] = (time.monotonic() + keep, client)
        return client

    async def _fetch(self, client_id: str) -> tuple[bytes, int | None]:
        url = _check_url(client_id, allow_http=self.allow_private)
        origin_host = url.host
        async with httpx.AsyncClient(transport=self.transport, follow_redirects=False, timeout=TIMEOUT_S) as http:
            for _ in range(MAX_REDIRECTS + 1):
                port = url.port or (443 if url.scheme == "https" else 80)
                address = await _public_address(url.host, port, allow_private=self.allow_private)
                pinned = url.copy_with(host=address)
                headers = {"Host": url.netloc.decode("ascii"), "Accept": "application/json"}
                extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
                request = http.build_request("GET", pinned, headers=headers, extensions=extensions)
                response = await http.send(request, stream=True)
                try:
                    if response.is_redirect:
                        target = httpx.URL(urljoin(str(url), response.headers.get("location", "")))
                        if target.host != origin_host:
                            raise ClientMetadataError("the client's metadata document redirects to another host")
                        url = _check_url(str(target), allow_http=self.allow_private)
                        continue
                    if response.status_code != 200:
                        raise ClientMetadataError(
                            f"the client's metadata document answered HTTP {response.status_code}"
                        )
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BYTES:
                            raise ClientMetadataError(f"the client's metadata document is over {MAX_BYTES} bytes")
                    found = _MAX_AGE.search(response.headers.get("cache-control", ""))
                    return body, int(found.group(1)) if found else None
                finally:
                    await response.aclose()
        raise ClientMetadataError("the client's metadata document redirects too many times")

    def _parse(self, client_id: str, body: bytes) -> Client:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ClientMetadataError("the client's metadata document is not JSON") from None
        if not isinstance(document, dict):
            raise ClientMetadataError("the client's metadata document is not a JSON object")
        document = cast(dict[str, Any], document)
        if document.get("client_id") != client_id:
            raise ClientMetadataError("the client's metadata document does not name its own URL as client_id")
        if document.get("token_endpoint_auth_method", "none") != "none" or "client_secret" in document:
            raise ClientMetadataError("a metadata-document client must be public (token_endpoint_auth_method none)")
        uris = document.get("redirect_uris")
        if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_REDIRECT_URIS:
            raise ClientMetadataError(
                f"the client's metadata document must list 1 to {MAX_REDIRECT_URIS} redirect_uris"
            )
        try:
            checked = [check_registered_redirect_uri(uri, f"redirect_uris[{i}]") for i, uri in enumerate(uris)]
        except (InvalidRedirectUri, InvalidClientMetadata) as exc:
            raise ClientMetadataError(f"the client's metadata document: {exc.description}") from None
        name = document.get("client_name")
        if not isinstance(name, str) or not name.strip():
            name = None
        return Client(
            client_id=client_id,
            redirect_uris=checked,
            name=name[:MAX_NAME_CHARS] if name else None,
            kind="metadata",
            auth_method="none",
        )
