"""Every problem a model host would hit with a plugin: manifest, where the spec lives, and the spec itself."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from urllib.parse import urlsplit

from plugkit.host.loader import LoadedPlugin, is_url
from plugkit.manifest import Mode, Problem, validate_manifest
from plugkit.spec import lint_spec


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def same_site(a: str, b: str) -> bool:
    """Whether two hosts share a domain (equal, or the same last two labels; IPs and single labels must be equal)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if a == b:
        return True
    if _is_ip(a) or _is_ip(b) or a.count(".") == 0 or b.count(".") == 0:
        return False
    return a.split(".")[-2:] == b.split(".")[-2:]


def _prefixed(document: str, problems: list[Problem]) -> list[Problem]:
    return [replace(p, field=f"{document}.{p.field}") for p in problems]


def check_plugin(plugin: LoadedPlugin, mode: Mode = "default") -> list[Problem]:
    """The problems of a loaded plugin; `mode` is the manifest validator's (default or strict)."""
    problems = list(plugin.problems)
    location = plugin.manifest_location or ""
    manifest_host = urlsplit(location).hostname if is_url(location) else None
    if plugin.manifest is not None:
        problems += _prefixed("manifest", validate_manifest(plugin.manifest, mode))
        spec_host = urlsplit(plugin.spec_location or "").hostname if is_url(plugin.spec_location or "") else None
        if manifest_host and spec_host and not same_site(manifest_host, spec_host):
            problems.append(
                Problem(
                    "error",
                    "manifest.api.url",
                    f"points to {spec_host}, off the manifest's domain {manifest_host}; the host refuses it",
                )
            )
    elif plugin.spec is not None:
        problems.append(Problem("warning", "manifest", "none was loaded (a spec alone), so it was not checked"))
    if plugin.spec is not None:
        problems += _prefixed("spec", lint_spec(plugin.spec))
        if manifest_host:
            for i, server in enumerate(plugin.spec.get("servers") or []):
                url = server.get("url") if isinstance(server, dict) else None
                host = urlsplit(url).hostname if isinstance(url, str) and is_url(url) else None
                if host and not same_site(manifest_host, host):
                    problems.append(
                        Problem(
                            "warning",
                            f"spec.servers[{i}].url",
                            f"is on {host}, not on the manifest's domain {manifest_host}: calls go elsewhere",
                        )
                    )
    return problems
