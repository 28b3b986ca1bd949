"""An OpenAPI description of the OAuth endpoints (which the plugins' own specs leave out), for fuzzing them."""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_ANY: dict[str, Any] = {"description": "any answer but a server error"}


def _form(*names: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {name: _STR for name in names}}
    return {"content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _query(*names: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "query", "schema": _STR} for name in names]


OAUTH_SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "plugkit OAuth endpoints", "version": "1"},
    "paths": {
        "/oauth/register": {
            "post": {
                "operationId": "register",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "redirect_uris": {"type": "array", "items": _STR},
                                    "token_endpoint_auth_method": _STR,
                                    "grant_types": {"type": "array", "items": _STR},
                                    "response_types": {"type": "array", "items": _STR},
                                    "client_name": _STR,
                                    "scope": _STR,
                                },
                            }
                        }
                    }
                },
                "responses": {"default": _ANY},
            }
        },
        "/oauth/token": {
            "post": {
                "operationId": "token",
                "requestBody": _form(
                    "grant_type",
                    "code",
                    "redirect_uri",
                    "client_id",
                    "client_secret",
                    "code_verifier",
                    "refresh_token",
                    "resource",
                    "scope",
                ),
                "responses": {"default": _ANY},
            }
        },
        "/oauth/revoke": {
            "post": {
                "operationId": "revoke",
                "requestBody": _form("token", "client_id", "client_secret"),
                "responses": {"default": _ANY},
            }
        },
        "/oauth/authorize": {
            "get": {
                "operationId": "authorize",
                "parameters": _query(
                    "response_type",
                    "client_id",
                    "redirect_uri",
                    "scope",
                    "state",
                    "code_challenge",
                    "code_challenge_method",
                    "resource",
                ),
                "responses": {"default": _ANY},
            },
            "post": {
                "operationId": "signIn",
                "requestBody": _form("request_id", "username", "password", "decision"),
                "responses": {"default": _ANY},
            },
        },
        "/.well-known/oauth-authorization-server": {
            "get": {"operationId": "serverMetadata", "responses": {"default": _ANY}}
        },
        "/.well-known/oauth-protected-resource": {
            "get": {"operationId": "resourceMetadata", "responses": {"default": _ANY}}
        },
    },
}
