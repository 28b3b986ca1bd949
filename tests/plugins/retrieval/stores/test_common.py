from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugkit.plugins.retrieval.filters import And, Equals, Range, parse_instant, to_tree
from plugkit.plugins.retrieval.models import DocumentMetadataFilter, Source
from plugkit.plugins.retrieval.stores.base import StoreInfo, StoreMismatchError
from plugkit.plugins.retrieval.stores.common import StoreSettings, check_info, maybe_epoch
from plugkit.plugins.retrieval.stores.fusion import rrf


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-02", datetime(2024, 1, 2, tzinfo=UTC)),
        ("2024-01-02T03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T05:04:05+02:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (" 2024-01-02T03:04:05.250Z ", datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)),
    ],
)
def test_iso_dates_become_the_epoch_of_their_instant(value: str, expected: datetime) -> None:
    assert parse_instant(value) == expected.timestamp()


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "", "01/02/2024"])
def test_a_date_that_is_not_iso_8601_is_refused_with_its_value(value: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_instant(value)


def test_a_stored_created_at_that_does_not_parse_has_no_instant() -> None:
    assert maybe_epoch("last tuesday") is None
    assert maybe_epoch(None) is None


def test_a_flat_filter_becomes_equalities_and_one_date_range() -> None:
    tree = to_tree(
        DocumentMetadataFilter(source=Source.file, author="ann", start_date="2024-01-01", end_date="2024-01-02")
    )

    assert tree == And(
        (
            Equals("source", "string", ("file",)),
            Equals("author", "string", ("ann",)),
            Range("created_at", "date", gte=parse_instant("2024-01-01"), lte=parse_instant("2024-01-02")),
        )
    )


def test_weighted_rrf_scales_each_ranking_by_its_weight() -> None:
    scores = dict(rrf([["a", "b"], ["b", "a"]], k=60, weights=[3.0, None]))

    assert scores["a"] == pytest.approx(3 / 61 + 1 / 62)
    assert scores["a"] > scores["b"]


@pytest.mark.parametrize("name", ["chunks; DROP TABLE x", "1abc", "a-b", "x" * 64, ""])
def test_a_collection_name_that_is_not_a_plain_identifier_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="collection"):
        StoreSettings(collection=name)


def test_another_model_or_dimension_is_a_mismatch_naming_both() -> None:
    with pytest.raises(StoreMismatchError, match="'old'.*'new'"):
        check_info(StoreInfo("old", 8), StoreInfo("new", 8), "table 't'")
    with pytest.raises(StoreMismatchError):
        check_info(StoreInfo("m", 8), StoreInfo("m", 16), "table 't'")
    check_info(StoreInfo("m", 8), StoreInfo("m", 8), "table 't'")


def test_store_settings_are_taken_by_name_from_the_plugin_settings(tmp_path: object) -> None:
    class PluginSettings:
        store_url = "postgresql://db/x"
        data_dir = tmp_path
        collection = "chunks_v2"
        rrf_k = 10
        unrelated = "ignored"

    settings = StoreSettings.of(PluginSettings())

    assert (settings.store_url, settings.data_dir, settings.collection, settings.rrf_k) == (
        "postgresql://db/x",
        tmp_path,
        "chunks_v2",
        10,
    )
    assert settings.hnsw_m == StoreSettings().hnsw_m


def test_store_settings_are_taken_from_the_plugin_settings_by_name(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from plugkit.plugins.retrieval.settings import RetrievalSettings

    plugin = RetrievalSettings(
        data_dir=tmp_path,
        store="qdrant",
        store_url="http://qdrant:6333",
        store_api_key=SecretStr("qd-key"),
        collection="team_docs",
        ef_search=250,
    )
    store = StoreSettings.of(plugin)
    assert (store.store_url, store.collection, store.ef_search, store.api_key) == (
        "http://qdrant:6333",
        "team_docs",
        250,
        "qd-key",
    )
    assert store.data_dir == tmp_path
