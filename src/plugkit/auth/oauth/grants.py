"""The token endpoint's protocol steps: reading the parameters, authenticating the client, redeeming a code (with
PKCE and the RFC 8707 resource) and refreshing (rotation, same audience)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN, CODE_VERIFIER_PATTERN, compare_s256_code_challenge
from fastapi import Request
from sqlalchemy import select, update

from plugkit.auth import tables
from plugkit.auth.clients import Client, ClientStore
from plugkit.auth.credentials import as_utc, hash_secret, utcnow
from plugkit.auth.oauth.client_metadata import looks_like_metadata_url
from plugkit.auth.oauth.errors import InvalidTarget, TooManyAttempts, printable
from plugkit.auth.oauth.metadata import canonical_resource
from plugkit.auth.oauth.tokens import issue_tokens, revoke_family
from plugkit.ratelimit import FailureLimiter
from plugkit.storage import Database

FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Audience:
    """The resources a token may be issued for at this request (the plugin's base URL and MCP URL as it is reached
    here), and the one a token is for when the client names none."""

    allowed: frozenset[str]
    default: str

    def check(self, resource: str | None) -> str | None:
        """The canonical form of a requested resource; InvalidTarget when it is not this plugin's."""
        if resource is None:
            return None
        canonical = canonical_resource(resource)
        if canonical is None or canonical not in self.allowed:
            served = ", ".join(printable(a, 100) for a in sorted(self.allowed))
            raise InvalidTarget(f"resource {printable(resource, 100)} is not served here; use one of {served}")
        return canonical


async def token_params(request: Request) -> dict[str, str]:
    """The parameters of a token or revocation request, sent as JSON or as a form (both content types the 2023
    plugin host used); InvalidRequestError otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequestError("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequestError("the JSON body must be an object")
        params = {str(k): str(v) for k, v in data.items() if isinstance(v, str | int) and not isinstance(v, bool)}
    elif content_type == FORM_TYPE:
        form = await request.form()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
    else:
        raise InvalidRequestError(f"send the parameters as application/json or {FORM_TYPE}")
    if any("\x00" in key or "\x00" in value for key, value in params.items()):
        raise InvalidRequestError("the parameters contain a NUL character")
    return params


def code_challenge(challenge: str | None, method: str | None, *, required: bool) -> str | None:
    """The PKCE code_challenge of an authorization request (RFC 7636); only S256 is accepted."""
    if challenge is None:
        if method:
            raise InvalidRequestError("code_challenge_method without code_challenge")
        if required:
            raise InvalidRequestError("code_challenge is required: this client must use PKCE with S256")
        return None
    if (method or "plain") != "S256":
        raise InvalidRequestError("only the S256 code_challenge_method is supported (plain is refused)")
    if not CODE_CHALLENGE_PATTERN.match(challenge):
        raise InvalidRequestError("code_challenge is malformed")
    return challenge


class Grants:
    """Client authentication and the two grants of the token endpoint."""

    def __init__(self, database: Database, clients: ClientStore, limiter: FailureLimiter) -> None:
        self.db, self.clients, self.limiter = database, clients, limiter

    async def authenticate_client(self, request: Request, params: dict[str, str], address: str) -> Client:
        """The client making a token or revocation request: a confidential one by its secret (in the body or by HTTP
        Basic), a public one by its client_id alone."""
        header_id, header_secret = extract_basic_authorization(request.headers)
        if "\x00" in (header_id or "") + (header_secret or ""):
            raise InvalidRequestError("the client credentials contain a NUL character")
        body_id, body_secret = params.get("client_id"), params.get("client_secret")
        if header_id is not None and body_secret is not None:
            raise InvalidRequestError("send the client credentials once: in the body or by HTTP Basic, not both")
        if header_id is not None:
            if body_id is not None and body_id != header_id:
                raise InvalidRequestError("client_id in the body differs from the HTTP Basic one")
            client_id, secret = header_id, header_secret or ""
        else:
            client_id, secret = body_id or "", body_secret
        if not client_id:
            raise InvalidClientError("client_id is required", status_code=401)
        keys = (f"client:{client_id[:200]}", f"addr:{address}")
        if await self.limiter.blocked(*keys):
            raise TooManyAttempts("too many failed client authentications; wait and retry")
        if secret is None:
            client = await self.public_client(client_id)
            if client is None:
                await self.limiter.record(*keys)
                raise InvalidClientError(
                    "unknown client, or a confidential client without its client_secret", status_code=401
                )
            return client
        client = await self.clients.authenticate(client_id, secret)
        if client is None:
            await self.limiter.record(*keys)
            raise InvalidClientError("unknown client or wrong client secret", status_code=401)
        return client

    async def public_client(self, client_id: str) -> Client | None:
        """A client that authenticates by its id alone: a registered public client, or a metadata-document client
        (checked when its code was issued; its document is not fetched again here)."""
        if looks_like_metadata_url(client_id):
            return Client(client_id=client_id, redirect_uris=[], name=None, kind="metadata", auth_method="none")
        client = await self.clients.get(client_id)
        return client if client is not None and client.public else None

    async def redeem_code(self, client: Client, params: dict[str, str], audience: Audience) -> dict[str, Any]:
        """The authorization_code grant."""
        code, redirect_uri = params.get("code"), params.get("redirect_uri")
        if not code:
            raise InvalidRequestError("code is required")
        if not redirect_uri:
            raise InvalidRequestError("redirect_uri is required")
        requested = audience.check(params.get("resource"))
        code_hash = hash_secret(code)
        c = tables.oauth_codes
        async with self.db.write() as session:
            row = (await session.execute(select(c).where(c.c.code_hash == code_hash))).first()
            if row is None or row.client_id != client.client_id:
                raise InvalidGrantError("the code is not valid for this client")
            used = await session.execute(
                update(c).where(c.c.code_hash == code_hash, c.c.used_at.is_(None)).values(used_at=utcnow())
            )
            if not used.rowcount:  # type: ignore[attr-defined]
                await revoke_family(session, code_hash)
                # The revocation must outlive the error, so commit here rather than roll back.
                await session.commit()
                raise InvalidGrantError("the code was already used; the tokens issued from it are revoked")
            if as_utc(row.expires_at) <= utcnow():
                raise InvalidGrantError("the code has expired")
            if row.redirect_uri != redirect_uri:
                raise InvalidGrantError("redirect_uri differs from the one in the authorization request")
            verifier = params.get("code_verifier")
            if row.code_challenge is not None:
                if not verifier or not CODE_VERIFIER_PATTERN.match(verifier):
                    raise InvalidGrantError("a valid code_verifier is required (PKCE)")
                if not compare_s256_code_challenge(verifier, row.code_challenge):
                    raise InvalidGrantError("code_verifier does not match the code_challenge")
            elif client.requires_pkce:
                raise InvalidGrantError("this client must use PKCE, and the code was issued without it")
            elif verifier is not None:
                raise InvalidGrantError("code_verifier sent, but the authorization request had no code_challenge")
            if requested is not None and row.resource is not None and requested != row.resource:
                raise InvalidTarget("resource differs from the one in the authorization request")
            target = requested or row.resource or audience.default
            body = await issue_tokens(session, client.client_id, row.user_id, row.scope, target, code_hash)
        await self.clients.mark_used(client.client_id)
        return body

    async def refresh(self, client: Client, params: dict[str, str], audience: Audience) -> dict[str, Any]:
        """The refresh_token grant: rotation, the same audience, a scope no wider."""
        refresh = params.get("refresh_token")
        if not refresh:
            raise InvalidRequestError("refresh_token is required")
        if "refresh_token" not in client.grant_types:
            raise UnauthorizedClientError("this client did not register the refresh_token grant")
        requested = audience.check(params.get("resource"))
        t = tables.oauth_tokens
        async with self.db.write() as session:
            row = (await session.execute(select(t).where(t.c.refresh_hash == hash_secret(refresh)))).first()
            if row is None or row.client_id != client.client_id:
                raise InvalidGrantError("the refresh token is not valid for this client")
            if requested is not None and row.audience is not None and requested != row.audience:
                raise InvalidTarget("a refresh cannot change the resource the tokens are for")
            # A pair issued before tokens had audiences (an upgraded database) is bound now, to what was asked.
            target = row.audience or requested or audience.default
            rotated = await session.execute(
                update(t).where(t.c.id == row.id, t.c.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            if not rotated.rowcount:  # type: ignore[attr-defined]
                # A rotated (or revoked) refresh token came back: it may be stolen, so end the whole chain.
                await revoke_family(session, row.family)
                await session.commit()
                raise InvalidGrantError("the refresh token was already used or revoked")
            if as_utc(row.refresh_expires_at) <= utcnow():
                raise InvalidGrantError("the refresh token has expired")
            scope = row.scope
            if params.get("scope"):
                wanted = set(scope_to_list(params["scope"]) or [])
                if not wanted <= set(scope_to_list(row.scope) or []):
                    raise InvalidScopeError("a refresh cannot widen the scope")
                scope = " ".join(sorted(wanted))
            return await issue_tokens(session, client.client_id, row.user_id, scope, target, row.family)
