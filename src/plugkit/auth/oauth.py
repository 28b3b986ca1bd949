"""`oauth`: the plugin is an OAuth 2.0 authorization server for the model host (RFC 6749 authorization code grant,
refresh tokens with rotation, PKCE S256 when sent). Every piece of state is in the database, so workers share it.

Authlib provides the protocol pieces (error types and their RFC 6749 bodies, HTTP Basic client credentials, PKCE,
URI building); its framework integrations are synchronous, so the endpoints themselves are written here, async."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN, CODE_VERIFIER_PATTERN, compare_s256_code_challenge
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import MetaData, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from plugkit import metrics
from plugkit.auth import tables
from plugkit.auth.bearer import USERNAME
from plugkit.auth.clients import Client, ClientStore, redirect_uri_allowed
from plugkit.auth.credentials import as_utc, hash_secret, new_secret, read_credential, unauthorized, utcnow
from plugkit.auth.principal import Principal
from plugkit.auth.ratelimit import FailureLimiter
from plugkit.auth.users import UserStore
from plugkit.manifest import OAuthAuth
from plugkit.settings import AuthKind, PluginSettings
from plugkit.storage import Database

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"
CODE_TTL = timedelta(minutes=10)
SIGN_IN_TTL = timedelta(minutes=10)
ACCESS_TTL = timedelta(hours=1)
REFRESH_TTL = timedelta(days=30)
PRUNE_AFTER = timedelta(days=1)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM_TYPE = "application/x-www-form-urlencoded"


class TooManyAttempts(OAuth2Error):  # type: ignore[misc]
    """Failed client or password attempts over the limit: 429 with the RFC 6749 error body."""

    error = "temporarily_unavailable"
    status_code = 429


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def oauth_error_response(exc: OAuth2Error) -> JSONResponse:
    """The RFC 6749 section 5.2 error JSON."""
    status, body, headers = exc()
    response = JSONResponse(body, status_code=status, headers=NO_STORE)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


class OAuthMethod:
    """Bearer access tokens issued by the plugin's own authorization server."""

    kind: AuthKind = "oauth"

    def __init__(self, settings: PluginSettings, database: Database) -> None:
        self.db = database
        self.settings = settings
        self.scopes = frozenset(scope_to_list(settings.oauth_scope) or [])
        self.clients = ClientStore(database)
        self.users = UserStore(database)
        self.limiter = FailureLimiter(database, settings.auth_failure_limit, settings.auth_failure_window_s)
        self._router = self._build_router()

    # --- the AuthMethod contract -------------------------------------------------------------------------------

    def manifest_auth(self, base_url: str) -> OAuthAuth:
        base = base_url.rstrip("/")
        return OAuthAuth(
            client_url=f"{base}{AUTHORIZE_PATH}",
            authorization_url=f"{base}{TOKEN_PATH}",
            scope=self.settings.oauth_scope,
            authorization_content_type=self.settings.oauth_content_type,
            verification_tokens=dict(self.settings.verification_tokens),
        )

    def security_scheme(self) -> dict[str, Any] | None:
        return {
            "type": "oauth2",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": AUTHORIZE_PATH,
                    "tokenUrl": TOKEN_PATH,
                    "refreshUrl": TOKEN_PATH,
                    "scopes": {s: "use the plugin on your behalf" for s in sorted(self.scopes)},
                }
            },
        }

    async def authenticate(self, request: Request) -> Principal:
        token = read_credential(request, "bearer")
        t = tables.oauth_tokens
        query = select(t.c.user_id, t.c.scope, t.c.access_expires_at).where(
            t.c.access_hash == hash_secret(token), t.c.revoked_at.is_(None)
        )
        row = await self.db.run_read(lambda conn: conn.execute(query).first())
        if row is None or as_utc(row.access_expires_at) <= utcnow():
            raise unauthorized("bearer", "invalid, expired or revoked access token", error="invalid_token")
        return Principal(method="oauth", user_id=row.user_id, scopes=frozenset(scope_to_list(row.scope) or []))

    def routers(self) -> Sequence[APIRouter]:
        return (self._router,)

    def metadata(self) -> Sequence[MetaData]:
        return (tables.metadata,)

    # --- routes ---------------------------------------------------------------------------------------------------

    def _build_router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route(AUTHORIZE_PATH, self.authorize_page, methods=["GET"], operation_id="oauthAuthorize")
        router.add_api_route(AUTHORIZE_PATH, self.authorize_submit, methods=["POST"], operation_id="oauthSignIn")
        router.add_api_route(TOKEN_PATH, self.token, methods=["POST"], operation_id="oauthToken")
        router.add_api_route(REVOKE_PATH, self.revoke, methods=["POST"], operation_id="oauthRevoke")
        return router

    async def authorize_page(self, request: Request) -> Response:
        """Check the authorization request, keep it in the database, and show the sign-in and consent form."""
        params = request.query_params
        if any("\x00" in value for value in params.values()):
            return _page("Invalid request", "<p>The request contains a NUL character.</p>", 400)
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        client = await self.clients.get(client_id) if client_id else None
        if client is None:
            return _page("Unknown application", "<p>The application that sent you here is not registered.</p>", 400)
        if not redirect_uri or not redirect_uri_allowed(redirect_uri, client.redirect_uris):
            return _page("Invalid request", "<p>The return address of this request is not registered.</p>", 400)
        state = params.get("state")
        try:
            if params.get("response_type") != "code":
                response_type = _printable(params.get("response_type", ""))
                raise UnsupportedResponseTypeError(
                    response_type, description=f"response_type={response_type} is not supported; use code"
                )
            if not state:
                raise InvalidRequestError("state is required")
            scope = self._granted_scope(params.get("scope"))
            challenge = _code_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
        except OAuth2Error as exc:
            return _redirect_error(redirect_uri, exc, state)
        request_id = new_secret("pkr")
        async with self.db.write() as session:
            await _prune(session)
            await session.execute(
                insert(tables.oauth_requests).values(
                    id_hash=hash_secret(request_id),
                    client_id=client.client_id,
                    redirect_uri=redirect_uri,
                    scope=scope,
                    state=state,
                    code_challenge=challenge,
                    expires_at=utcnow() + SIGN_IN_TTL,
                )
            )
        return _sign_in_form(request_id, client, scope)

    async def authorize_submit(self, request: Request) -> Response:
        """Sign the user in, and send them back to the application with a code (or with access_denied)."""
        form = await request.form()
        request_id, username = str(form.get("request_id", "")), str(form.get("username", "")).strip()
        password, decision = str(form.get("password", "")), str(form.get("decision", "allow"))
        username = username if USERNAME.match(username) else ""  # never a valid user: fails like a wrong password
        t = tables.oauth_requests
        async with self.db.read() as session:
            pending = (await session.execute(select(t).where(t.c.id_hash == hash_secret(request_id)))).first()
        if pending is None or pending.used_at is not None or as_utc(pending.expires_at) <= utcnow():
            body = "<p>This sign-in has expired or was already used. Start again from the application.</p>"
            return _page("Sign-in expired", body, 400)
        client = await self.clients.get(pending.client_id)
        if client is None:
            return _page("Unknown application", "<p>The application was removed.</p>", 400)
        if decision == "deny":
            if await self._consume_request(request_id):
                return _redirect_error(pending.redirect_uri, AccessDeniedError(), pending.state)
            return _page("Sign-in expired", "<p>This sign-in was already used.</p>", 400)
        keys = (f"user:{username.lower() or '(invalid)'}", f"addr:{_client_address(request)}")
        if await self.limiter.blocked(*keys):
            minutes = max(1, self.settings.auth_failure_window_s // 60)
            error = f"Too many failed sign-ins. Wait {minutes} minutes and try again."
            return _sign_in_form(request_id, client, pending.scope, error=error, username=username, status=429)
        if not username or not await self.users.verify(username, password):
            await self.limiter.record(*keys)
            error = "The user name or password is wrong."
            return _sign_in_form(request_id, client, pending.scope, error=error, username=username, status=400)
        if not await self._consume_request(request_id):
            return _page("Sign-in expired", "<p>This sign-in was already used.</p>", 400)
        code = new_secret("pka")
        async with self.db.write() as session:
            await session.execute(
                insert(tables.oauth_codes).values(
                    code_hash=hash_secret(code),
                    client_id=pending.client_id,
                    redirect_uri=pending.redirect_uri,
                    user_id=username,
                    scope=pending.scope,
                    code_challenge=pending.code_challenge,
                    expires_at=utcnow() + CODE_TTL,
                )
            )
        location = add_params_to_uri(pending.redirect_uri, [("code", code), ("state", pending.state)])
        return RedirectResponse(location, status_code=303, headers=NO_STORE)

    async def token(self, request: Request) -> Response:
        """The token endpoint: grants authorization_code and refresh_token, JSON or form bodies."""
        try:
            params = await _token_params(request)
            client = await self._authenticate_client(request, params)
            grant_type = params.get("grant_type", "")
            if grant_type == "authorization_code":
                body = await self._redeem_code(client, params)
            elif grant_type == "refresh_token":
                body = await self._refresh(client, params)
            elif not grant_type:
                raise InvalidRequestError("grant_type is required")
            else:
                error = UnsupportedGrantTypeError(_printable(grant_type))
                error.description = f"grant_type={_printable(grant_type)} is not supported"
                raise error
        except OAuth2Error as exc:
            return oauth_error_response(exc)
        metrics.count_oauth_grant(grant_type)
        return JSONResponse(body, headers=NO_STORE)

    async def revoke(self, request: Request) -> Response:
        """RFC 7009 revocation: the client revokes one of its access or refresh tokens (and the pair it is in)."""
        try:
            params = await _token_params(request)
            client = await self._authenticate_client(request, params)
        except OAuth2Error as exc:
            return oauth_error_response(exc)
        token = params.get("token", "")
        if token:
            digest = hash_secret(token)
            t = tables.oauth_tokens
            async with self.db.write() as session:
                await session.execute(
                    update(t)
                    .where(
                        t.c.client_id == client.client_id,
                        t.c.revoked_at.is_(None),
                        or_(t.c.access_hash == digest, t.c.refresh_hash == digest),
                    )
                    .values(revoked_at=utcnow())
                )
        return Response(status_code=200, headers=NO_STORE)

    # --- protocol steps -------------------------------------------------------------------------------------------

    def _granted_scope(self, requested: str | None) -> str:
        wanted = scope_to_list(requested) if requested else None
        if not wanted:
            return " ".join(sorted(self.scopes))
        unknown = [s for s in wanted if s not in self.scopes]
        if unknown:
            raise InvalidScopeError("unknown scope: " + _printable(" ".join(unknown), 100))
        return " ".join(sorted(set(wanted)))

    async def _consume_request(self, request_id: str) -> bool:
        t = tables.oauth_requests
        async with self.db.write() as session:
            result = await session.execute(
                update(t).where(t.c.id_hash == hash_secret(request_id), t.c.used_at.is_(None)).values(used_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _authenticate_client(self, request: Request, params: dict[str, str]) -> Client:
        header_id, header_secret = extract_basic_authorization(request.headers)
        if "\x00" in (header_id or "") + (header_secret or ""):
            raise InvalidRequestError("the client credentials contain a NUL character")
        body_id, body_secret = params.get("client_id"), params.get("client_secret")
        if header_id is not None and body_secret is not None:
            raise InvalidRequestError("send the client credentials once: in the body or by HTTP Basic, not both")
        if header_id is not None:
            if body_id is not None and body_id != header_id:
                raise InvalidRequestError("client_id in the body differs from the HTTP Basic one")
            client_id, secret, status = header_id, header_secret or "", 401
        else:
            client_id, secret, status = body_id or "", body_secret or "", 401
        if not client_id or not secret:
            raise InvalidClientError("client_id and client_secret are required", status_code=status)
        keys = (f"client:{client_id[:200]}", f"addr:{_client_address(request)}")
        if await self.limiter.blocked(*keys):
            raise TooManyAttempts("too many failed client authentications; wait and retry")
        client = await self.clients.authenticate(client_id, secret)
        if client is None:
            await self.limiter.record(*keys)
            raise InvalidClientError("unknown client or wrong client secret", status_code=status)
        return client

    async def _redeem_code(self, client: Client, params: dict[str, str]) -> dict[str, Any]:
        code, redirect_uri = params.get("code"), params.get("redirect_uri")
        if not code:
            raise InvalidRequestError("code is required")
        if not redirect_uri:
            raise InvalidRequestError("redirect_uri is required")
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
                await _revoke_family(session, code_hash)
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
            elif verifier is not None:
                raise InvalidGrantError("code_verifier sent, but the authorization request had no code_challenge")
            return await _issue(session, client.client_id, row.user_id, row.scope, code_hash)

    async def _refresh(self, client: Client, params: dict[str, str]) -> dict[str, Any]:
        refresh = params.get("refresh_token")
        if not refresh:
            raise InvalidRequestError("refresh_token is required")
        t = tables.oauth_tokens
        async with self.db.write() as session:
            row = (await session.execute(select(t).where(t.c.refresh_hash == hash_secret(refresh)))).first()
            if row is None or row.client_id != client.client_id:
                raise InvalidGrantError("the refresh token is not valid for this client")
            rotated = await session.execute(
                update(t).where(t.c.id == row.id, t.c.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            if not rotated.rowcount:  # type: ignore[attr-defined]
                # A rotated (or revoked) refresh token came back: it may be stolen, so end the whole chain.
                await _revoke_family(session, row.family)
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
            return await _issue(session, client.client_id, row.user_id, scope, row.family)


def _printable(text: str, limit: int = 60) -> str:
    """Client input made fit for an RFC 6749 error_description (printable ASCII without quote or backslash)."""
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in text[:limit])


async def _token_params(request: Request) -> dict[str, str]:
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


def _code_challenge(challenge: str | None, method: str | None) -> str | None:
    if challenge is None:
        if method:
            raise InvalidRequestError("code_challenge_method without code_challenge")
        return None
    if (method or "plain") != "S256":
        raise InvalidRequestError("only the S256 code_challenge_method is supported")
    if not CODE_CHALLENGE_PATTERN.match(challenge):
        raise InvalidRequestError("code_challenge is malformed")
    return challenge


async def _prune(session: AsyncSession) -> None:
    """Forget sign-ins and codes a day after they expired, and token pairs whose refresh token expired."""
    now = utcnow()
    await session.execute(delete(tables.oauth_requests).where(tables.oauth_requests.c.expires_at < now - PRUNE_AFTER))
    await session.execute(delete(tables.oauth_codes).where(tables.oauth_codes.c.expires_at < now - PRUNE_AFTER))
    await session.execute(delete(tables.oauth_tokens).where(tables.oauth_tokens.c.refresh_expires_at < now))


async def _revoke_family(session: AsyncSession, family: str) -> None:
    t = tables.oauth_tokens
    await session.execute(update(t).where(t.c.family == family, t.c.revoked_at.is_(None)).values(revoked_at=utcnow()))


async def _issue(session: AsyncSession, client_id: str, user_id: str, scope: str, family: str) -> dict[str, Any]:
    access, refresh, now = new_secret("pkt"), new_secret("pkf"), utcnow()
    await session.execute(
        insert(tables.oauth_tokens).values(
            access_hash=hash_secret(access),
            refresh_hash=hash_secret(refresh),
            family=family,
            client_id=client_id,
            user_id=user_id,
            scope=scope,
            access_expires_at=now + ACCESS_TTL,
            refresh_expires_at=now + REFRESH_TTL,
        )
    )
    return {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": int(ACCESS_TTL.total_seconds()),
        "refresh_token": refresh,
        "scope": scope,
    }


def _redirect_error(redirect_uri: str, exc: OAuth2Error, state: str | None) -> RedirectResponse:
    params = [(k, v) for k, v in exc.get_body() if k != "state"]
    if state:
        params.append(("state", state))
    return RedirectResponse(add_params_to_uri(redirect_uri, params), status_code=303, headers=NO_STORE)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}"
    "button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}.error{color:#a00}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    headers = {
        **NO_STORE,
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; "
        "style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'",
    }
    return HTMLResponse(document, status_code=status, headers=headers)


def _sign_in_form(
    request_id: str, client: Client, scope: str, *, error: str | None = None, username: str = "", status: int = 200
) -> HTMLResponse:
    app_name = html.escape(client.name or "An application")
    body = (
        f"<p>{app_name} asks to use this plugin on your behalf (scope: <code>{html.escape(scope)}</code>).</p>"
        + (f"<p class='error' role='alert'>{html.escape(error)}</p>" if error else "")
        + f"<form method='post' action='{AUTHORIZE_PATH}'>"
        f"<input type='hidden' name='request_id' value='{html.escape(request_id)}'>"
        "<label for='username'>User name</label>"
        f"<input id='username' name='username' autocomplete='username' required value='{html.escape(username)}'>"
        "<label for='password'>Password</label>"
        "<input id='password' name='password' type='password' autocomplete='current-password' required>"
        "<button type='submit' name='decision' value='allow'>Sign in and allow</button>"
        "<button type='submit' name='decision' value='deny' formnovalidate>Deny</button>"
        "</form>"
    )
    return _page("Sign in", body, status)
