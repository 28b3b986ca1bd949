"""Loading a plugin as a host does: from its URL (in-process app) or from local files, JSON or YAML, 3.0 or 3.1."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from plugkit.host.loader import LoadError, load_plugin, parse_document
from tests.helpers import free_port
from tests.host.support import GOOD_OP, MANIFEST, build_app, host_client, spec_with


async def test_a_base_url_loads_the_well_known_manifest_and_the_spec_it_names(tmp_path: Path) -> None:
    async with host_client(build_app("todo", tmp_path)) as client:
        loaded = await load_plugin("http://127.0.0.1:5002/", client=client)
    assert loaded.problems == []
    assert loaded.manifest_location == "http://127.0.0.1:5002/.well-known/ai-plugin.json"
    assert loaded.spec_location == "http://127.0.0.1:5002/openapi.yaml"
    assert loaded.name == "todo" and loaded.server_url == "http://127.0.0.1:5002"
    assert loaded.spec is not None and loaded.spec["openapi"].startswith("3.1")


async def test_a_spec_url_alone_loads_without_a_manifest(tmp_path: Path) -> None:
    async with host_client(build_app("todo", tmp_path)) as client:
        loaded = await load_plugin("http://127.0.0.1:5002/openapi.json", client=client)
    assert loaded.manifest is None and loaded.spec is not None and loaded.problems == []
    assert loaded.name == "TODO_Plugin"


async def test_a_local_manifest_with_a_relative_api_url_loads_the_yaml_spec_beside_it(tmp_path: Path) -> None:
    (tmp_path / ".well-known").mkdir()
    manifest = {**MANIFEST, "api": {"type": "openapi", "url": "/openapi.yaml"}}
    (tmp_path / ".well-known" / "ai-plugin.json").write_text(json.dumps(manifest))
    (tmp_path / "openapi.yaml").write_text(yaml.safe_dump(spec_with({"/thing": GOOD_OP})))
    loaded = await load_plugin(str(tmp_path))
    assert loaded.problems == []
    assert loaded.spec_location == str(tmp_path / "openapi.yaml")
    assert loaded.spec is not None and loaded.spec["openapi"] == "3.0.1"


async def test_an_unreachable_plugin_is_a_problem_not_an_exception() -> None:
    loaded = await load_plugin(f"http://127.0.0.1:{free_port()}")
    [problem] = loaded.problems
    assert problem.level == "error" and problem.field == "manifest" and "cannot fetch" in problem.message


async def test_a_manifest_url_answering_404_is_reported_with_its_status(tmp_path: Path) -> None:
    async with host_client(build_app("todo", tmp_path)) as client:
        loaded = await load_plugin("http://127.0.0.1:5002/nope.json", client=client)
    assert "HTTP 404" in loaded.problems[0].message


async def test_a_plugin_that_never_answers_is_reported_after_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        loaded = await load_plugin(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
    assert "did not arrive within 0.3 s" in loaded.problems[0].message


async def test_a_spec_that_does_not_parse_is_reported_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "ai-plugin.json").write_text(json.dumps({**MANIFEST, "api": {"url": "openapi.yaml"}}))
    (tmp_path / "openapi.yaml").write_text("openapi: 3.0.1\npaths: [\n  - : :\n")
    loaded = await load_plugin(str(tmp_path / "ai-plugin.json"))
    [problem] = loaded.problems
    assert problem.field == "spec" and "neither JSON nor YAML at line" in problem.message
    assert loaded.manifest is not None and loaded.spec is None


async def test_a_missing_spec_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "ai-plugin.json").write_text(json.dumps({**MANIFEST, "api": {"url": "missing.yaml"}}))
    loaded = await load_plugin(str(tmp_path / "ai-plugin.json"))
    assert "missing.yaml" in loaded.problems[0].message


async def test_a_spec_source_overrides_the_manifests_api_url(tmp_path: Path) -> None:
    (tmp_path / "ai-plugin.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "local.json").write_text(json.dumps(spec_with({"/thing": GOOD_OP})))
    loaded = await load_plugin(str(tmp_path / "ai-plugin.json"), spec_source=str(tmp_path / "local.json"))
    assert loaded.problems == [] and loaded.spec is not None


def test_broken_json_is_reported_as_json_not_as_yaml() -> None:
    with pytest.raises(LoadError, match="the spec is not valid JSON"):
        parse_document('{"openapi": "3.1.0",', "spec")
