"""The players' names searched in memory: a name search over a few thousand players without a query.

SQLite tests a substring in each row of the players table at about 120 ns a row (instr() with its row overhead);
here the names are one string, searched by `str.find` (C, a fraction of that), and each hit is mapped back to its
player by the names' start offsets. The local backend keeps one `PlayerNames` per data version of the dataset.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SEPARATOR = "\n"  # between names; a match across it is checked against the name and dropped


@dataclass(frozen=True)
class PlayerNames:
    """Rows of players, in the order they are answered, with their search names."""

    rows: list[Sequence[Any]]
    names: list[str]
    text: str  # the names, each followed by SEPARATOR
    starts: list[int]  # where each name starts in `text`

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]], name_at: int) -> PlayerNames:
        """`rows` in their order, the search name of each at position `name_at`."""
        names = [row[name_at] for row in rows]
        starts, at = [], 0
        for name in names:
            starts.append(at)
            at += len(name) + len(SEPARATOR)
        return cls(list(rows), names, "".join(name + SEPARATOR for name in names), starts)

    def matching(self, words: Sequence[str]) -> list[Sequence[Any]]:
        """The rows whose name contains every one of `words` (all rows for none), in order."""
        if not words:
            return list(self.rows)
        word = max(words, key=len)  # the rarest, likely: the fewest hits to check
        text, starts, names, found = self.text, self.starts, self.names, []
        last = len(starts) - 1
        at = text.find(word)
        while at != -1:
            i = bisect_right(starts, at) - 1
            name = names[i]
            if all(w in name for w in words):
                found.append(self.rows[i])
            if i == last:
                break
            at = text.find(word, starts[i + 1])
        return found


__all__ = ["PlayerNames"]
