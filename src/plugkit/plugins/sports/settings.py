"""Settings of the sports plugin and of the balldontlie-compatible server built on its local dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from plugkit.settings import PluginSettings


class SportsSettings(PluginSettings):
    port: int = 5001
    sports_backend: Literal["local", "balldontlie"] = Field(
        default="local", description="local: the SQLite dataset in data_dir; balldontlie: the upstream API"
    )
    sports_db: Path | None = Field(default=None, description="The local dataset; default: <data_dir>/sports.db")
    balldontlie_url: str = Field(default="https://api.balldontlie.io/v1", description="the balldontlie API base URL")
    balldontlie_api_key: SecretStr | None = None
    balldontlie_api_key_file: Path | None = Field(default=None, description="a file holding the balldontlie API key")
    upstream_timeout_s: float = 10.0
    upstream_retries: int = Field(default=3, ge=0, le=10)
    upstream_backoff_s: float = 0.5
    upstream_max_backoff_s: float = 20.0
    cache_ttl_s: float = Field(default=300.0, description="Seconds an upstream answer is reused; 0: no cache")
    cache_size: int = Field(
        default=2048,
        ge=0,
        description="answers kept: from the upstream API for cache_ttl_s, from the local dataset until it changes; "
        "0: none",
    )

    def dataset_path(self) -> Path:
        return (self.sports_db or self.data_dir / "sports.db").resolve()

    def balldontlie_key(self) -> str | None:
        """The upstream API key, from the setting or from its file."""
        if self.balldontlie_api_key is not None:
            return self.balldontlie_api_key.get_secret_value()
        if self.balldontlie_api_key_file is not None:
            return self.balldontlie_api_key_file.read_text(encoding="utf-8").strip()
        return None


class UpstreamSettings(SportsSettings):
    """`plugkit serve sports-upstream`: the local dataset served as the balldontlie v1 API."""

    port: int = 5011
    upstream_api_key: SecretStr | None = Field(
        default=None, description="The key clients must send in the Authorization header; none: open to all"
    )
    upstream_api_key_file: Path | None = None
    upstream_legacy_paging: bool = Field(
        default=False, description="Answer in the legacy API's shape (page, total_pages) even without `page`"
    )

    def required_key(self) -> str | None:
        """The key clients must send, from the setting or from its file."""
        if self.upstream_api_key is not None:
            return self.upstream_api_key.get_secret_value()
        if self.upstream_api_key_file is not None:
            return self.upstream_api_key_file.read_text(encoding="utf-8").strip()
        return None
