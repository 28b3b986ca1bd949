from __future__ import annotations

from plugkit.plugins.sports.names import PlayerNames

ROWS = [
    (1, "lebron james"),
    (2, "james harden"),
    (3, "bronny james"),
    (4, "jalen brunson"),
    (5, "james james"),
    (6, "nikola jokic"),
]


def ids(found: list[object]) -> list[int]:
    return [row[0] for row in found]  # type: ignore[index]


def test_a_word_finds_every_name_containing_it_in_the_rows_order_once_each() -> None:
    names = PlayerNames.of(ROWS, 1)
    assert ids(names.matching(["james"])) == [1, 2, 3, 5]
    assert ids(names.matching(["bron"])) == [1, 3]
    assert ids(names.matching(["jokic"])) == [6]  # the last name
    assert ids(names.matching(["lebron"])) == [1]  # the first name


def test_every_word_must_be_in_the_name_in_any_order() -> None:
    names = PlayerNames.of(ROWS, 1)
    assert ids(names.matching(["james", "bron"])) == [1, 3]
    assert ids(names.matching(["bron", "james", "le"])) == [1]
    assert names.matching(["james", "jokic"]) == []


def test_no_word_finds_every_row_and_an_unknown_word_none() -> None:
    names = PlayerNames.of(ROWS, 1)
    assert ids(names.matching([])) == [1, 2, 3, 4, 5, 6]
    assert names.matching(["zzz"]) == []
    assert PlayerNames.of([], 1).matching(["james"]) == []


def test_text_spanning_two_names_is_not_a_match() -> None:
    names = PlayerNames.of(ROWS, 1)
    assert names.matching(["harden\nbronny"]) == []
    assert names.matching(["s\nj"]) == []
