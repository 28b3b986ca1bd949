"""Load a plugin as a host does: its manifest, then the OpenAPI spec the manifest names (URL or local files)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import yaml

from plugkit.manifest import PLUGIN_HOSTNAME, Problem

FETCH_TIMEOUT_S = 15.0  # what the original host allowed for the manifest and the spec
WELL_KNOWN = "/.well-known/ai-plugin.json"


@dataclass
class LoadedPlugin:
    """A plugin's documents as fetched, with the problems met while fetching and parsing them."""

    source: str
    manifest: dict[str, Any] | None = None
    manifest_location: str | None = None
    spec: dict[str, Any] | None = None
    spec_location: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The name the model knows the plugin by (the spec's title when there is no manifest)."""
        if self.manifest and isinstance(self.manifest.get("name_for_model"), str):
            return str(self.manifest["name_for_model"])
        title = str(((self.spec or {}).get("info") or {}).get("title") or "plugin")
        return "".join(c if c.isalnum() or c == "_" else "_" for c in title)

    @property
    def description(self) -> str:
        if self.manifest and isinstance(self.manifest.get("description_for_model"), str):
            return str(self.manifest["description_for_model"])
        return str(((self.spec or {}).get("info") or {}).get("description") or "")

    @property
    def server_url(self) -> str | None:
        """The first absolute server URL of the spec, where calls go."""
        for server in (self.spec or {}).get("servers") or []:
            url = server.get("url") if isinstance(server, dict) else None
            if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
                return url.rstrip("/")
        return None


class LoadError(Exception):
    """A document could not be fetched or parsed; the message says which and why."""


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def parse_document(text: str, what: str) -> Any:
    """Parse JSON or YAML text (JSON first, so JSON errors are not reported as YAML ones)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_error:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            if text.lstrip().startswith(("{", "[")):
                raise LoadError(f"the {what} is not valid JSON: {json_error}") from exc
            raise LoadError(f"the {what} is neither JSON nor YAML{where}: {problem}") from exc


async def fetch_text(client: httpx.AsyncClient, url: str, what: str, timeout: float = FETCH_TIMEOUT_S) -> str:
    """GET a document as the host does: one attempt, `timeout` seconds, redirects followed, 200 required."""
    try:
        response = await client.get(url, timeout=timeout, follow_redirects=True)
    except httpx.TimeoutException as exc:
        raise LoadError(f"the {what} at {url} did not arrive within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise LoadError(f"cannot fetch the {what} at {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise LoadError(f"the {what} at {url} answered HTTP {response.status_code}, not 200")
    return response.text


def _read_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"cannot read the {what} {path}: {exc}") from exc


def manifest_url(source: str) -> str:
    """The manifest's URL for a plugin named by its base URL (`/.well-known/ai-plugin.json` added), or the URL given
    when it already names a document."""
    parts = urlsplit(source)
    if parts.path.endswith((".json", ".yaml", ".yml")):
        return source
    return source.rstrip("/") + WELL_KNOWN


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _is_spec(document: Any) -> bool:
    return isinstance(document, dict) and ("openapi" in document or "swagger" in document)


async def load_plugin(
    source: str,
    *,
    spec_source: str | None = None,
    client: httpx.AsyncClient | None = None,
    timeout: float = FETCH_TIMEOUT_S,
) -> LoadedPlugin:
    """Load a plugin from a base URL, a manifest URL or file, or a spec URL or file (a spec alone has no manifest).

    Problems met on the way (unreachable URL, unparsable document) are collected on the result, not raised.
    """
    if client is None:
        async with httpx.AsyncClient() as own:
            return await load_plugin(source, spec_source=spec_source, client=own, timeout=timeout)
    plugin = LoadedPlugin(source=source)

    async def read(location: str, what: str) -> Any:
        if is_url(location):
            text = await fetch_text(client, location, what, timeout)
        else:
            text = _read_file(Path(location), what)
        return parse_document(text, what)

    first = manifest_url(source) if is_url(source) else source
    if not is_url(first) and Path(first).is_dir():
        first = str(Path(first) / WELL_KNOWN.lstrip("/"))
    try:
        document = await read(first, "manifest")
    except LoadError as exc:
        plugin.problems.append(Problem("error", "manifest", str(exc)))
        return plugin
    if _is_spec(document) and spec_source is None:
        plugin.spec, plugin.spec_location = document, first
        return plugin
    if not isinstance(document, dict):
        plugin.problems.append(Problem("error", "manifest", f"must be a JSON object, got {type(document).__name__}"))
        return plugin
    plugin.manifest, plugin.manifest_location = document, first

    location = spec_source or _spec_location(document, first)
    if location is None:
        plugin.problems.append(Problem("error", "manifest.api.url", "is missing, so there is no spec to load"))
        return plugin
    plugin.spec_location = location
    try:
        spec = await read(location, "spec")
    except LoadError as exc:
        plugin.problems.append(Problem("error", "spec", str(exc)))
        return plugin
    if not isinstance(spec, dict):
        plugin.problems.append(Problem("error", "spec", f"must be an object, got {type(spec).__name__}"))
        return plugin
    plugin.spec = spec
    return plugin


def _spec_location(manifest: dict[str, Any], manifest_location: str) -> str | None:
    """Where the manifest's api.url points: resolved against the manifest's URL, or its folder for a local file."""
    api = manifest.get("api")
    url = api.get("url") if isinstance(api, dict) else None
    if not isinstance(url, str) or not url:
        return None
    if is_url(manifest_location):
        url = url.replace(PLUGIN_HOSTNAME, _origin(manifest_location))
        return urljoin(manifest_location, url)
    if is_url(url):
        return url
    folder = Path(manifest_location).parent
    relative = url.replace(PLUGIN_HOSTNAME, "").lstrip("/")
    candidates = [folder / relative] + ([folder.parent / relative] if folder.name == ".well-known" else [])
    return str(next((c for c in candidates if c.exists()), candidates[0]))
