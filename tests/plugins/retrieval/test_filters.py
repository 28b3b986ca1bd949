"""The filter language: what it accepts, the tree it makes, and the errors it names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from plugkit.plugins.retrieval.filters import (
    And,
    Equals,
    Not,
    Or,
    Range,
    as_instant,
    is_standard,
    keys_of,
    parse_instant,
    to_tree,
)
from plugkit.plugins.retrieval.models import DocumentMetadataFilter, parse_filter


def tree(data: Any) -> Any:
    return to_tree(parse_filter(data))


def test_a_comparison_of_a_custom_string_becomes_one_equality() -> None:
    assert tree({"key": "team", "type": "eq", "value": "infra"}) == Equals("team", "string", ("infra",))


def test_ne_and_nin_are_the_negations_of_eq_and_in() -> None:
    assert tree({"key": "n", "type": "ne", "value": 3}) == Not(Equals("n", "number", (3,)))
    assert tree({"key": "source", "type": "nin", "value": ["email", "chat"]}) == Not(
        Equals("source", "string", ("email", "chat"))
    )


def test_dates_compare_as_instants_whatever_their_offset() -> None:
    node = tree({"key": "created_at", "type": "gte", "value": "2024-01-02T01:00:00+02:00"})
    assert node == Range("created_at", "date", gte=parse_instant("2024-01-01T23:00:00Z"))
    due = tree({"key": "due", "type": "eq", "value": "2024-05-01"})
    assert due == Range("due", "date", gte=parse_instant("2024-05-01"), lte=parse_instant("2024-05-01"))


def test_numbers_compare_as_numbers_and_booleans_stay_booleans() -> None:
    assert tree({"key": "p", "type": "lt", "value": 2.5}) == Range("p", "number", lt=2.5)
    assert tree({"key": "flag", "type": "eq", "value": True}) == Equals("flag", "bool", (True,))


def test_compounds_nest_and_the_flat_filter_becomes_an_and() -> None:
    node = tree(
        {
            "type": "or",
            "filters": [
                {"key": "a", "type": "eq", "value": "x"},
                {"type": "and", "filters": [{"key": "b", "type": "gt", "value": 1}]},
            ],
        }
    )
    assert node == Or((Equals("a", "string", ("x",)), And((Range("b", "number", gt=1.0),))))
    assert keys_of(node) == {"a", "b"}
    assert tree({"author": "ann", "source": "email"}) == And(
        (Equals("source", "string", ("email",)), Equals("author", "string", ("ann",)))
    )
    assert to_tree(DocumentMetadataFilter()) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"key": "a", "type": "like", "value": "x"}, "Input should be 'eq'"),
        ({"key": "a b", "type": "eq", "value": "x"}, "String should match pattern"),
        ({"key": "a", "type": "in", "value": "x"}, "takes a list"),
        ({"key": "a", "type": "in", "value": []}, "1 to 100"),
        ({"key": "a", "type": "eq", "value": ["x"]}, "single value"),
        ({"key": "a", "type": "gt", "value": True}, "compares numbers or ISO 8601 dates"),
        ({"key": "a", "type": "gte", "value": "soon"}, "compares numbers or ISO 8601 dates"),
        ({"key": "a", "type": "in", "value": [1, "x"]}, "mix types"),
        ({"key": "source", "type": "eq", "value": "fax"}, "one of email, file, chat"),
        ({"key": "url", "type": "eq", "value": 3}, "string field"),
        ({"key": "created_at", "type": "lt", "value": 5}, "ISO 8601"),
        ({"key": "a", "type": "eq", "value": {"x": 1}}, "valid"),
        ({"type": "xor", "filters": []}, "Input should be"),
        ({"document_id": "a", "type_": 1}, "Extra inputs"),
    ],
)
def test_a_bad_filter_is_refused_with_a_message_naming_the_problem(data: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_filter(data)


def test_the_error_location_is_the_path_into_the_filter() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_filter({"type": "and", "filters": [{"key": "a", "type": "eq", "value": "x"}, {"key": "b", "type": "no"}]})
    loc = caught.value.errors()[0]["loc"]
    assert loc[:3] == ("compound", "filters", 1)


def test_only_iso_8601_shaped_strings_are_instants() -> None:
    assert as_instant("2024-05-01T10:00:00Z") == parse_instant("2024-05-01T10:00:00Z")
    assert as_instant("20240501") is None and as_instant("May 1") is None and as_instant(3) is None
    assert is_standard("created_at") and is_standard("author") and not is_standard("team")
