"""`oauth`: the plugin is an OAuth 2.1 authorization server for the model host and for MCP clients.

One concept per module: `method` (the AuthMethod contract), `endpoints` (the HTTP endpoints), `grants` (the token
endpoint's protocol steps), `tokens` (what is stored), `registration` (RFC 7591), `client_metadata` (client ID
metadata documents), `metadata` (RFC 8414 and 9728 documents), `pages` (the sign-in templates), `errors`.

Authlib provides the protocol pieces (error types and their RFC 6749 bodies, HTTP Basic client credentials, PKCE,
URI building); its framework integrations are synchronous, so the endpoints themselves are written here, async."""

from plugkit.auth.oauth.method import OAuthMethod

__all__ = ["OAuthMethod"]
