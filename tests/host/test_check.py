"""What `check_plugin` reports: our own plugins are clean in both modes; each kind of host problem is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugkit.host.check import check_plugin, same_site
from plugkit.host.loader import LoadedPlugin, load_plugin
from plugkit.manifest import Mode
from tests.host.support import GOOD_OP, MANIFEST, PLUGIN_NAMES, build_app, host_client, spec_with


def plugin(spec: dict[str, Any], manifest: dict[str, Any] | None = None) -> LoadedPlugin:
    return LoadedPlugin(
        source="https://example.com",
        manifest=manifest or MANIFEST,
        manifest_location="https://example.com/.well-known/ai-plugin.json",
        spec=spec,
        spec_location=(manifest or MANIFEST)["api"]["url"],
    )


def fields(problems: list[Any], level: str = "error") -> list[str]:
    return [p.field for p in problems if p.level == level]


@pytest.mark.parametrize("mode", ["default", "strict"])
@pytest.mark.parametrize("name", PLUGIN_NAMES)
async def test_every_reference_plugin_passes_check_cleanly(name: str, mode: Mode, tmp_path: Path) -> None:
    app = build_app(name, tmp_path)
    async with host_client(app) as client:
        loaded = await load_plugin("http://127.0.0.1:5002", client=client)
    assert loaded.spec is not None and loaded.manifest is not None
    assert [str(p) for p in check_plugin(loaded, mode)] == []


def test_a_clean_plugin_has_no_problems() -> None:
    assert check_plugin(plugin(spec_with({"/thing": GOOD_OP}))) == []


def test_an_api_url_off_the_manifests_domain_is_an_error() -> None:
    manifest = {**MANIFEST, "api": {"type": "openapi", "url": "https://elsewhere.org/openapi.yaml"}}
    problems = check_plugin(plugin(spec_with({"/thing": GOOD_OP}), manifest))
    [error] = [p for p in problems if p.field == "manifest.api.url"]
    assert error.level == "error" and "elsewhere.org" in error.message and "example.com" in error.message


def test_an_api_url_on_a_subdomain_of_the_manifests_domain_is_accepted() -> None:
    manifest = {**MANIFEST, "api": {"type": "openapi", "url": "https://api.example.com/openapi.yaml"}}
    assert fields(check_plugin(plugin(spec_with({"/thing": GOOD_OP}), manifest))) == []


def test_same_site_compares_domains_and_requires_equal_ips() -> None:
    assert same_site("api.example.com", "example.com")
    assert not same_site("example.com", "example.org")
    assert not same_site("127.0.0.1", "127.0.0.2")
    assert same_site("localhost", "LOCALHOST")


def test_manifest_problems_are_reported_in_both_modes_with_strict_limits_only_in_strict() -> None:
    manifest = {**MANIFEST, "name_for_human": "A name that is thirty chars"}
    spec = spec_with({"/thing": GOOD_OP})
    assert fields(check_plugin(plugin(spec, manifest), "default")) == []
    assert fields(check_plugin(plugin(spec, manifest), "strict")) == ["manifest.name_for_human"]


def test_each_spec_problem_the_host_would_hit_is_named() -> None:
    long_text = "x" * 301
    spec = spec_with(
        {
            "/a": {"get": {"summary": "no id", "responses": {}}},
            "/b": {"get": {"operationId": "dup", "responses": {}}, "post": {"operationId": "dup", "responses": {}}},
            "/c": {"get": {"operationId": "long", "description": long_text, "responses": {}}},
            "/d": {
                "get": {
                    "operationId": "longParam",
                    "parameters": [
                        {"name": "q", "in": "query", "description": "y" * 701, "schema": {"type": "string"}}
                    ],
                    "responses": {},
                }
            },
            "/e": {
                "post": {
                    "operationId": "listBody",
                    "requestBody": {"content": {"application/json": {"schema": {"type": "array"}}}},
                    "responses": {},
                }
            },
            "/f": {"get": {"operationId": "badRef", "responses": {"200": {"$ref": "#/components/responses/Nope"}}}},
        },
        servers=[{"url": "/relative"}],
    )
    errors = fields(check_plugin(plugin(spec)))
    assert "spec.paths./a.get" in errors  # no operationId
    assert "spec.paths./b.post" in errors  # repeated operationId
    assert "spec.paths./c.get.description" in errors
    assert "spec.paths./d.get.parameters.q.description" in errors
    assert "spec.paths./e.post.requestBody" in errors
    assert "spec.servers[0].url" in errors
    assert "spec.$ref" in errors


def test_a_referenced_parameter_with_a_long_description_is_found() -> None:
    spec = spec_with(
        {"/a": {"parameters": [{"$ref": "#/components/parameters/Q"}], "get": {"operationId": "a", "responses": {}}}},
        components={"parameters": {"Q": {"name": "q", "in": "query", "description": "z" * 701}}},
    )
    assert fields(check_plugin(plugin(spec))) == ["spec.paths./a.get.parameters.q.description"]


def test_more_than_thirty_operations_is_a_warning_for_gpt_actions() -> None:
    many = {f"/op{i}": {"get": {"operationId": f"op{i}", "responses": {}}} for i in range(31)}
    problems = check_plugin(plugin(spec_with(many)))
    assert fields(problems) == [] and fields(problems, "warning") == ["spec.paths"]


def test_swagger_two_documents_and_unknown_openapi_versions_are_errors() -> None:
    swagger = {"swagger": "2.0", "info": {}, "paths": {"/thing": GOOD_OP}, "servers": [{"url": "https://example.com"}]}
    assert "spec.openapi" in fields(check_plugin(plugin(swagger)))
    four = spec_with({"/thing": GOOD_OP}, openapi="4.0.0")
    assert "spec.openapi" in fields(check_plugin(plugin(four)))


def test_a_spec_alone_is_checked_with_a_warning_that_no_manifest_was() -> None:
    loaded = LoadedPlugin(source="spec.yaml", spec=spec_with({"/thing": GOOD_OP}), spec_location="spec.yaml")
    problems = check_plugin(loaded)
    assert fields(problems) == [] and fields(problems, "warning") == ["manifest"]
