"""Settings shared by every plugin: read from `PLUGKIT_*` environment variables or a `.env` file, built by a factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

AuthKind = Literal["none", "service_http", "user_http", "oauth"]

DEFAULT_CORS_ORIGINS = ["https://chat.openai.com", "https://chatgpt.com"]
LOCALHOST_ORIGIN_REGEX = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"


class PluginSettings(BaseSettings):
    """What every plugin server reads. A plugin subclasses it for its own options and its default port."""

    model_config = SettingsConfigDict(env_prefix="PLUGKIT_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = Path(".plugkit")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL (postgresql+psycopg://...); default: a SQLite file in data_dir"
    )
    public_url: str | None = Field(default=None, description="The base URL the plugin is reached at")
    trust_proxy_headers: bool = False
    workers: int = 1

    auth: AuthKind = "none"
    auth_scheme: Literal["bearer", "basic"] = "bearer"
    service_token: SecretStr | None = None
    service_token_file: Path | None = None
    verification_tokens: dict[str, str] = Field(default_factory=dict)
    oauth_scope: str = "plugin"
    oauth_content_type: Literal["application/json", "application/x-www-form-urlencoded"] = "application/json"
    auth_failure_limit: int = Field(default=10, description="failed sign-ins or client auths per window before 429")
    auth_failure_window_s: int = 300
    oauth_registration: Literal["open", "off"] = Field(
        default="open", description="RFC 7591 dynamic client registration, as MCP hosts (Claude, ChatGPT) use it"
    )
    oauth_max_clients: int = Field(default=1000, description="the most dynamically registered clients kept at once")
    oauth_registrations_per_hour: int = Field(default=20, description="dynamic registrations per client address")
    oauth_allow_private_client_metadata: bool = Field(
        default=False,
        description="development only: fetch client ID metadata documents over http and from private addresses",
    )

    cors_origins: list[str] = Field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))
    cors_origin_regex: str | None = LOCALHOST_ORIGIN_REGEX
    max_response_chars: int = 100_000
    max_body_bytes: int = 1_000_000
    body_drain_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="of a body over the limit, how much is read and dropped after its 413 before the connection "
        "closes, so that clients which send the whole body before reading (urllib) see the 413",
    )
    body_drain_s: float = Field(default=10.0, ge=0, description="how long such a body may take to drain")
    request_timeout_s: float = Field(default=45.0, description="the model host gives up on a call after 45 s")
    rate_limit_per_minute: int = Field(default=600, description="requests per client address per minute; 0: none")
    rate_limit_exempt: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="client addresses never limited (local tools; behind a proxy, trust its headers instead)",
    )
    fast_paths: bool = Field(
        default=True,
        description="answer each operation's well-formed requests by a fast path derived from its route, ahead of "
        "FastAPI's routing (plugkit.fastpath)",
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry (traces, metrics, logs through the global providers); off, each "
        "request would look the providers up; plugkit's own Prometheus metrics are at /metrics",
    )
    console: Literal["auto", "on", "off"] = Field(
        default="auto", description="the /console page for people: auto serves it when listening on localhost only"
    )
    console_client_id: str | None = Field(
        default=None, description="the public OAuth client (PKCE, no secret) the console signs in with under oauth"
    )
    contact_email: str = "plugkit@example.com"
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(default="text", description="server log lines: text or JSON")
    access_log: bool = Field(default=True, description="one log line per request (plugkit.observe)")
    shutdown_timeout_s: int = Field(
        default=30, ge=0, description="on SIGTERM, how long requests in flight may take to finish before they stop"
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token /metrics asks for; unset: /metrics answers loopback clients only"
    )

    def database_url_for(self, name: str) -> str:
        """The plugin's database: the configured URL, else `<data_dir>/<name>.db` (SQLite)."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{name}.db').resolve()}"


S = TypeVar("S", bound=PluginSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment, with explicit overrides (unset ones, None, are ignored)."""
    return cls(**{k: v for k, v in overrides.items() if v is not None})
