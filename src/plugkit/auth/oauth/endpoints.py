"""The authorization server's HTTP endpoints: metadata, registration, the sign-in pages, token and revocation."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidRequestError,
    InvalidScopeError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from plugkit import metrics
from plugkit.auth.bearer import USERNAME
from plugkit.auth.clients import Client, ClientStore, redirect_uri_allowed
from plugkit.auth.credentials import utcnow
from plugkit.auth.oauth.client_metadata import ClientMetadataDocuments, ClientMetadataError, looks_like_metadata_url
from plugkit.auth.oauth.errors import (
    NO_STORE,
    InvalidClientMetadata,
    InvalidTarget,
    RegistrationRefused,
    TooManyAttempts,
    oauth_error_response,
    printable,
    redirect_error,
)
from plugkit.auth.oauth.grants import Audience, Grants, code_challenge, token_params
from plugkit.auth.oauth.metadata import (
    AUTHORIZATION_SERVER_METADATA,
    AUTHORIZE_PATH,
    OPENID_CONFIGURATION,
    REGISTER_PATH,
    RESOURCE_METADATA,
    REVOKE_PATH,
    TOKEN_PATH,
    authorization_server_metadata,
    canonical_resource,
    protected_resource_metadata,
    resources_of,
)
from plugkit.auth.oauth.pages import confirm_page, message_page, sign_in_page
from plugkit.auth.oauth.registration import parse_registration
from plugkit.auth.oauth.tokens import TokenStore
from plugkit.auth.users import UserStore
from plugkit.edge import client_address, public_base_url
from plugkit.ratelimit import EventLimiter, FailureLimiter
from plugkit.settings import PluginSettings
from plugkit.storage import Database

UNUSED_REGISTRATION_TTL = timedelta(days=1)
REGISTRATION_WINDOW_S = 3600
AUDIENCES_KEPT = 64  # base URLs whose token audience is kept computed


class AuthorizationServer:
    """The plugin's own OAuth 2.1 authorization server (RFC 6749 with PKCE, 7591, 7009, 8414, 8707, 9207), every piece
    of state in the database so workers share it."""

    def __init__(self, settings: PluginSettings, database: Database) -> None:
        self.settings = settings
        self.scopes = frozenset(scope_to_list(settings.oauth_scope) or [])
        self.clients = ClientStore(database)
        self.users = UserStore(database)
        self.tokens = TokenStore(database)
        self.limiter = FailureLimiter(database, settings.auth_failure_limit, settings.auth_failure_window_s)
        self.registrations = EventLimiter(database, settings.oauth_registrations_per_hour, REGISTRATION_WINDOW_S, "reg")
        self.grants = Grants(database, self.clients, self.limiter)
        self.documents = ClientMetadataDocuments(allow_private=settings.oauth_allow_private_client_metadata)
        self.resource_paths: set[str] = set()
        self._audiences: dict[tuple[str, int], Audience] = {}

    # --- where the plugin is reached -----------------------------------------------------------------------------

    def issuer(self, request: Request) -> str:
        return public_base_url(request, self.settings)

    def audience(self, request: Request) -> Audience:
        """The resources a token for this request's base URL may be for (computed once per base URL seen; the Host
        header is the client's, so at most AUDIENCES_KEPT are kept)."""
        base = self.issuer(request)
        key = (base, len(self.resource_paths))  # the paths only grow, as routes are set up
        found = self._audiences.get(key)
        if found is None:
            if len(self._audiences) >= AUDIENCES_KEPT:
                self._audiences.clear()
            found = self._audiences[key] = Audience(
                resources_of(base, self.resource_paths), canonical_resource(base) or base
            )
        return found

    def resource_metadata_url(self, request: Request) -> str:
        path = request.url.path if request.url.path in self.resource_paths else ""
        return self.issuer(request) + RESOURCE_METADATA + path

    # --- routes ---------------------------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route(AUTHORIZE_PATH, self.authorize_page, methods=["GET"], operation_id="oauthAuthorize")
        router.add_api_route(AUTHORIZE_PATH, self.authorize_submit, methods=["POST"], operation_id="oauthSignIn")
        router.add_api_route(TOKEN_PATH, self.token, methods=["POST"], operation_id="oauthToken")
        router.add_api_route(REVOKE_PATH, self.revoke, methods=["POST"], operation_id="oauthRevoke")
        router.add_api_route(REGISTER_PATH, self.register, methods=["POST"], operation_id="oauthRegister")
        for path in (AUTHORIZATION_SERVER_METADATA, OPENID_CONFIGURATION):
            router.add_api_route(path, self.server_metadata, methods=["GET"], operation_id=None)
        router.add_api_route(RESOURCE_METADATA, self.root_resource_metadata, methods=["GET"])
        return router

    def resource_metadata_route(self, path: str) -> Route:
        """RFC 9728 metadata of a resource served at `path` (the MCP endpoint), in the path-suffixed form; a 401 from
        that path then names it."""
        self.resource_paths.add(path)

        async def metadata(request: Request) -> JSONResponse:
            base = self.issuer(request)
            return JSONResponse(protected_resource_metadata(base, path, self.scopes, request.app.title))

        return Route(RESOURCE_METADATA + path, endpoint=metadata, methods=["GET"])

    async def server_metadata(self, request: Request) -> JSONResponse:
        """RFC 8414 authorization server metadata (also served as the OpenID discovery document)."""
        registration = self.settings.oauth_registration == "open"
        return JSONResponse(authorization_server_metadata(self.issuer(request), self.scopes, registration=registration))

    async def root_resource_metadata(self, request: Request) -> JSONResponse:
        """RFC 9728 metadata of the REST API, the resource at the plugin's base URL."""
        return JSONResponse(protected_resource_metadata(self.issuer(request), "", self.scopes, request.app.title))

    # --- registration ---------------------------------------------------------------------------------------------

    async def register(self, request: Request) -> Response:
        """RFC 7591 dynamic client registration: public or confidential clients with their own redirect URIs."""
        try:
            if self.settings.oauth_registration != "open":
                raise RegistrationRefused("dynamic client registration is turned off on this server")
            address = client_address(request.scope, self.settings)
            allowed, retry_after = await self.registrations.hit(address)
            if not allowed:
                error = TooManyAttempts(
                    f"more than {self.registrations.limit} registrations an hour from {printable(address)}"
                )
                return oauth_error_response(error, {"Retry-After": str(retry_after)})
            try:
                body: Any = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError):
                raise InvalidClientMetadata("the body must be a JSON object of client metadata") from None
            registration = parse_registration(body, self.scopes)
            await self.clients.expire_unused(utcnow() - UNUSED_REGISTRATION_TTL)
            if await self.clients.count_registered() >= self.settings.oauth_max_clients:
                raise RegistrationRefused("this server holds as many registered clients as it allows; try tomorrow")
            client_id, secret, issued_at = await self.clients.register(registration, address)
        except OAuth2Error as exc:
            return oauth_error_response(exc)
        return JSONResponse(registration.as_response(client_id, secret, issued_at), status_code=201, headers=NO_STORE)

    # --- sign-in --------------------------------------------------------------------------------------------------

    async def _client(self, client_id: str) -> tuple[Client | None, str]:
        """The client behind a client_id, or None and what to tell the person."""
        if not client_id:
            return None, "The application that sent you here did not say who it is (no client_id)."
        if looks_like_metadata_url(client_id):
            try:
                return await self.documents.resolve(client_id), ""
            except ClientMetadataError as exc:
                return None, f"The application that sent you here cannot be checked: {exc}."
        client = await self.clients.get(client_id)
        return client, "" if client else "The application that sent you here is not registered."

    def _granted_scope(self, requested: str | None) -> str:
        wanted = scope_to_list(requested) if requested else None
        if not wanted:
            return " ".join(sorted(self.scopes))
        unknown = [s for s in wanted if s not in self.scopes]
        if unknown:
            raise InvalidScopeError("unknown scope: " + printable(" ".join(unknown), 100))
        return " ".join(sorted(set(wanted)))

    async def authorize_page(self, request: Request) -> Response:
        """Check the authorization request, keep it in the database, and show the sign-in and consent form."""
        params = request.query_params
        if any("\x00" in value for value in params.values()):
            return message_page("Invalid request", "The request contains a NUL character.")
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        client, problem = await self._client(client_id)
        if client is None:
            return message_page("Unknown application", problem)
        if not redirect_uri or not redirect_uri_allowed(redirect_uri, client.redirect_uris):
            return message_page("Invalid request", "The return address of this request is not registered.")
        state = params.get("state")
        try:
            if params.get("response_type") != "code":
                response_type = printable(params.get("response_type", ""))
                raise UnsupportedResponseTypeError(
                    response_type, description=f"response_type={response_type} is not supported; use code"
                )
            if not state:
                raise InvalidRequestError("state is required")
            scope = self._granted_scope(params.get("scope"))
            challenge = code_challenge(
                params.get("code_challenge"), params.get("code_challenge_method"), required=client.requires_pkce
            )
            audience = self.audience(request)
            resources = {audience.check(r) for r in params.getlist("resource")}
            if len(resources) > 1:
                raise InvalidTarget("ask for one resource at a time")
        except OAuth2Error as exc:
            return redirect_error(redirect_uri, exc, state, self.issuer(request))
        request_id = await self.tokens.start_sign_in(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            code_challenge=challenge,
            resource=next(iter(resources), None),
        )
        return sign_in_page(request_id, client, redirect_uri, scope, request.app.title)

    async def authorize_submit(self, request: Request) -> Response:
        """Sign the user in, and send them back to the application with a code (or with access_denied)."""
        form = await request.form()
        request_id, username = str(form.get("request_id", "")), str(form.get("username", "")).strip()
        password, decision = str(form.get("password", "")), str(form.get("decision", "allow"))
        username = username if USERNAME.match(username) else ""  # never a valid user: fails like a wrong password
        pending = await self.tokens.pending_sign_in(request_id)
        if pending is None:
            return message_page(
                "Sign-in expired", "This sign-in has expired or was already used. Start again from the application."
            )
        client, _problem = await self._client(pending.client_id)
        if client is None:
            return message_page("Unknown application", "The application was removed.")
        issuer = self.issuer(request)
        if decision == "deny":
            if await self.tokens.consume_sign_in(request_id):
                return redirect_error(pending.redirect_uri, AccessDeniedError(), pending.state, issuer)
            return message_page("Sign-in expired", "This sign-in was already used.")
        if pending.user_id is not None:  # the confirmation of a client new to the person who signed in
            return await self._grant(request_id, pending, pending.user_id, issuer)
        keys = (f"user:{username.lower() or '(invalid)'}", f"addr:{client_address(request.scope, self.settings)}")

        def again(error: str, status: int) -> Response:
            return sign_in_page(
                request_id, client, pending.redirect_uri, pending.scope, request.app.title,
                error=error, username=username, status=status,
            )  # fmt: skip

        if await self.limiter.blocked(*keys):
            minutes = max(1, self.settings.auth_failure_window_s // 60)
            return again(f"Too many failed sign-ins. Wait {minutes} minutes and try again.", 429)
        if not username or not await self.users.verify(username, password):
            await self.limiter.record(*keys)
            return again("The user name or password is wrong.", 400)
        if client.kind != "operator" and not await self.clients.approved_by(client.client_id, username):
            # Anyone can register a client now: a person confirms one they have not allowed before, having seen
            # its name and where it sends them. Clients an operator made are trusted as before.
            await self.tokens.hold_for_confirmation(request_id, username)
            return confirm_page(request_id, client, pending.redirect_uri, pending.scope, request.app.title, username)
        return await self._grant(request_id, pending, username, issuer)

    async def _grant(self, request_id: str, pending: Any, username: str, issuer: str) -> Response:
        """Use up the sign-in, remember the approval, and send the person back with a code."""
        if not await self.tokens.consume_sign_in(request_id):
            return message_page("Sign-in expired", "This sign-in was already used.")
        await self.clients.approve(pending.client_id, username)
        code = await self.tokens.issue_code(pending, username)
        query = [("code", code), ("state", pending.state), ("iss", issuer)]
        return RedirectResponse(add_params_to_uri(pending.redirect_uri, query), status_code=303, headers=NO_STORE)

    # --- token and revocation -------------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        """The token endpoint: grants authorization_code and refresh_token, JSON or form bodies."""
        try:
            params = await token_params(request)
            address = client_address(request.scope, self.settings)
            client = await self.grants.authenticate_client(request, params, address)
            grant_type = params.get("grant_type", "")
            if grant_type == "authorization_code":
                body = await self.grants.redeem_code(client, params, self.audience(request))
            elif grant_type == "refresh_token":
                body = await self.grants.refresh(client, params, self.audience(request))
            elif not grant_type:
                raise InvalidRequestError("grant_type is required")
            else:
                error = UnsupportedGrantTypeError(printable(grant_type))
                error.description = f"grant_type={printable(grant_type)} is not supported"
                raise error
        except OAuth2Error as exc:
            return oauth_error_response(exc)
        metrics.count_oauth_grant(grant_type)
        return JSONResponse(body, headers=NO_STORE)

    async def revoke(self, request: Request) -> Response:
        """RFC 7009 revocation: the client revokes one of its access or refresh tokens (and the pair it is in)."""
        try:
            params = await token_params(request)
            address = client_address(request.scope, self.settings)
            client = await self.grants.authenticate_client(request, params, address)
        except OAuth2Error as exc:
            return oauth_error_response(exc)
        token = params.get("token", "")
        if token:
            await self.tokens.revoke(client.client_id, token)
        return Response(status_code=200, headers=NO_STORE)
