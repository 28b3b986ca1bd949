"""The tables the per-user auth methods keep in the plugin's own database. Secrets are stored only as hashes."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text

from plugkit.schema import versioned

# Release 0.1.0 kept one set of auth tables in PostgreSQL's public schema for every plugin: each plugin's schema gets
# a copy, so every plugin keeps its users, tokens and OAuth clients.
metadata = versioned(
    MetaData(), "auth", "plugkit.auth:migrations", shared_in_0_1_0=True, earlier_tables=("auth_failures",)
)

_ID = BigInteger().with_variant(Integer, "sqlite")

users = Table(
    "auth_users",
    metadata,
    Column("username", String(200), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

user_tokens = Table(
    "auth_user_tokens",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# `kind`: "operator" (made with `plugkit oauth-clients create`; PKCE optional, as the 2023 plugin host ran it) or
# "registered" (RFC 7591 dynamic registration; PKCE required). A public client's `auth_method` is "none".
oauth_clients = Table(
    "auth_oauth_clients",
    metadata,
    Column("client_id", String(100), primary_key=True),
    Column("secret_hash", String(64), nullable=False),  # a public client's is of a secret no one was given
    Column("redirect_uris", Text, nullable=False),  # JSON list of exact URIs or patterns with `*`
    Column("name", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(20), nullable=False, server_default="operator"),
    Column("auth_method", String(40), nullable=False, server_default="client_secret_post"),
    Column("grant_types", Text, nullable=False, server_default='["authorization_code", "refresh_token"]'),
    Column("scope", Text, nullable=True),
    Column("registered_from", String(100), nullable=True),
    Column("used_at", DateTime(timezone=True), nullable=True),  # first code redeemed; unused registrations expire
)

# Which user allowed which client: a person is asked to confirm a client they have not allowed before.
oauth_approvals = Table(
    "auth_oauth_approvals",
    metadata,
    Column("client_id", String(2100), primary_key=True),
    Column("user_id", String(200), primary_key=True),
    Column("approved_at", DateTime(timezone=True), nullable=False),
)

# A sign-in in progress: the validated authorization request, keyed by a one-time id carried in the form.
oauth_requests = Table(
    "auth_oauth_requests",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("client_id", String(2100), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("user_id", String(200), nullable=True),  # signed in, waiting for the first-time confirmation
    Column("code_challenge", String(128), nullable=True),
    Column("resource", Text, nullable=True),  # RFC 8707: the resource the client asked for, if it named one
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

oauth_codes = Table(
    "auth_oauth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(2100), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=True),
    Column("resource", Text, nullable=True),  # RFC 8707: the resource the client asked for, if it named one
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

# One row per issued access/refresh pair; `family` is the hash of the code the chain of refreshes started from.
oauth_tokens = Table(
    "auth_oauth_tokens",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("access_hash", String(64), nullable=False, unique=True),
    Column("refresh_hash", String(64), nullable=True, unique=True),
    Column("family", String(64), nullable=False, index=True),
    Column("client_id", String(2100), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("scope", Text, nullable=False),
    Column("audience", Text, nullable=False),  # RFC 8707: the resource the token is for; refused elsewhere
    Column("access_expires_at", DateTime(timezone=True), nullable=False),
    Column("refresh_expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)
