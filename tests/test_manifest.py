from __future__ import annotations

import json
from typing import Any

import pytest

from plugkit.manifest import Manifest, has_errors, substitute_hostname, validate_manifest
from tests.helpers import SHARED_DATA


def approved_manifests() -> list[dict[str, Any]]:
    entries = json.loads((SHARED_DATA / "plugin-store" / "approved-manifests.json").read_text())
    return [entry["manifest"] for entry in entries]


def good_manifest(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": "v1",
        "name_for_human": "TODO List",
        "name_for_model": "todo",
        "description_for_human": "Manage your TODO list.",
        "description_for_model": "Plugin for managing a TODO list.",
        "auth": {"type": "none"},
        "api": {"type": "openapi", "url": "https://todo.example.org/openapi.yaml"},
        "logo_url": "https://todo.example.org/logo.png",
        "contact_email": "legal@example.org",
        "legal_info_url": "https://todo.example.org/legal",
    }
    data.update(changes)
    return data


def test_all_866_approved_store_manifests_pass_default_mode() -> None:
    manifests = approved_manifests()
    assert len(manifests) == 866
    failing = {m["name_for_model"]: validate_manifest(m) for m in manifests if has_errors(validate_manifest(m))}
    assert failing == {}


def test_strict_mode_reports_the_store_manifests_over_the_documented_limits() -> None:
    manifests = approved_manifests()
    over_human = [m for m in manifests if len(m["name_for_human"]) > 20]
    assert over_human, "the corpus has names over 20 characters"
    for manifest in over_human:
        messages = [str(p) for p in validate_manifest(manifest, "strict") if p.field == "name_for_human"]
        assert messages == [
            f"error: name_for_human: is {len(manifest['name_for_human'])} characters, over the strict limit of 20"
        ]
    over_desc = [m for m in manifests if len(m["description_for_human"]) > 100]
    assert over_desc
    assert all(any(p.field == "description_for_human" for p in validate_manifest(m, "strict")) for m in over_desc)


def test_a_good_manifest_has_no_problems_in_either_mode() -> None:
    assert validate_manifest(good_manifest()) == []
    assert validate_manifest(good_manifest(), "strict") == []


def test_every_auth_variant_parses_with_its_fields() -> None:
    variants = [
        {"type": "none"},
        {"type": "user_http", "authorization_type": "basic", "instructions": "Use your key"},
        {"type": "service_http", "authorization_type": "bearer", "verification_tokens": {"openai": "abc"}},
        {
            "type": "oauth",
            "client_url": "https://todo.example.org/oauth/authorize",
            "scope": "todos",
            "authorization_url": "https://todo.example.org/oauth/token",
            "authorization_content_type": "application/x-www-form-urlencoded",
            "verification_tokens": {"openai": "abc"},
        },
    ]
    for auth in variants:
        manifest = Manifest.model_validate(good_manifest(auth=auth))
        assert manifest.to_json()["auth"] == auth
        assert not has_errors(validate_manifest(good_manifest(auth=auth), "strict"))


def test_an_unknown_authorization_type_is_an_error_naming_the_field() -> None:
    problems = validate_manifest(good_manifest(auth={"type": "user_http", "authorization_type": "digest"}))
    assert has_errors(problems)
    assert any(p.field.startswith("auth") and "authorization_type" in p.field for p in problems)


def test_unknown_fields_are_kept_and_reported_as_warnings() -> None:
    data = good_manifest(endpoints=["/a"])
    problems = validate_manifest(data)
    assert [(p.level, p.field) for p in problems] == [("warning", "endpoints")]
    assert Manifest.model_validate(data).to_json()["endpoints"] == ["/a"]


def test_name_for_model_with_a_dash_is_an_error_that_shows_the_value() -> None:
    problems = validate_manifest(good_manifest(name_for_model="todo-list"))
    assert [str(p) for p in problems] == [
        "error: name_for_model: must contain only letters, digits and _, got 'todo-list'"
    ]


def test_underscore_in_name_for_model_passes_default_but_not_strict() -> None:
    assert validate_manifest(good_manifest(name_for_model="todo_list")) == []
    assert has_errors(validate_manifest(good_manifest(name_for_model="todo_list"), "strict"))


@pytest.mark.parametrize(
    ("field", "limit"),
    [("name_for_human", 50), ("name_for_model", 50), ("description_for_human", 120), ("description_for_model", 8000)],
)
def test_default_limits_name_the_field_the_limit_and_the_length(field: str, limit: int) -> None:
    problems = validate_manifest(good_manifest(**{field: "a" * (limit + 1)}))
    assert f"error: {field}: is {limit + 1} characters, over the default limit of {limit}" in [str(p) for p in problems]
    assert validate_manifest(good_manifest(**{field: "a" * limit})) == []


def test_a_bad_email_is_a_warning_by_default_and_an_error_in_strict_mode() -> None:
    default = validate_manifest(good_manifest(contact_email="not-an-email"))
    strict = validate_manifest(good_manifest(contact_email="not-an-email"), "strict")
    assert [(p.level, p.field) for p in default] == [("warning", "contact_email")]
    assert [(p.level, p.field) for p in strict] == [("error", "contact_email")]


def test_a_relative_api_url_is_a_warning_by_default_and_an_error_in_strict_mode() -> None:
    assert [p.level for p in validate_manifest(good_manifest(api={"type": "openapi", "url": "/openapi.json"}))] == [
        "warning"
    ]
    strict = validate_manifest(good_manifest(api={"type": "openapi", "url": "/openapi.json"}), "strict")
    assert [(p.level, p.field) for p in strict] == [("error", "api.url")]


def test_strict_mode_requires_https_except_on_localhost() -> None:
    plain = good_manifest(logo_url="http://todo.example.org/logo.png")
    assert [(p.level, p.field) for p in validate_manifest(plain, "strict")] == [("error", "logo_url")]
    local = good_manifest(logo_url="http://localhost:5002/logo.png")
    assert validate_manifest(local, "strict") == []


def test_a_missing_required_field_is_an_error_naming_it() -> None:
    data = good_manifest()
    del data["description_for_model"]
    assert [(p.level, p.field) for p in validate_manifest(data)] == [("error", "description_for_model")]


def test_plugin_hostname_is_replaced_everywhere_in_the_document() -> None:
    template = good_manifest(
        api={"type": "openapi", "url": "PLUGIN_HOSTNAME/openapi.yaml"}, logo_url="PLUGIN_HOSTNAME/logo.png"
    )
    result = substitute_hostname(template, "https://todo.example.org/")
    assert result["api"]["url"] == "https://todo.example.org/openapi.yaml"
    assert result["logo_url"] == "https://todo.example.org/logo.png"
    assert "PLUGIN_HOSTNAME" not in json.dumps(result)
