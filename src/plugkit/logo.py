"""A real 512x512 PNG logo for each plugin, drawn without an imaging library: a rounded tile with a letter."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

# 5x7 bitmap glyphs for the letters the reference plugins use.
_GLYPHS = {
    "T": ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
}
SIZE = 512


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@lru_cache(maxsize=8)
def render_logo(letter: str, rgb: tuple[int, int, int]) -> bytes:
    """PNG bytes: a tile of colour `rgb` with `letter` in white, on a transparent background."""
    glyph = _GLYPHS.get(letter.upper(), _GLYPHS["P"])
    cell, radius, margin = 48, 96, 16
    gx, gy = (SIZE - 5 * cell) // 2, (SIZE - 7 * cell) // 2
    rows = []
    for y in range(SIZE):
        row = bytearray(b"\x00")  # filter type: none
        for x in range(SIZE):
            inside = margin <= x < SIZE - margin and margin <= y < SIZE - margin
            if inside:
                cx = min(max(x, margin + radius), SIZE - margin - radius - 1)
                cy = min(max(y, margin + radius), SIZE - margin - radius - 1)
                inside = (x - cx) ** 2 + (y - cy) ** 2 <= radius**2
            if not inside:
                row += b"\x00\x00\x00\x00"
                continue
            col, line = (x - gx) // cell, (y - gy) // cell
            on = 0 <= col < 5 and 0 <= line < 7 and x >= gx and y >= gy and glyph[line][col] == "1"
            row += bytes((255, 255, 255, 255)) if on else bytes((*rgb, 255))
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )
