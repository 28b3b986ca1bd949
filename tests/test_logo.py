from __future__ import annotations

import struct
import zlib

from plugkit.logo import render_logo


def test_logo_is_a_valid_512_by_512_rgba_png() -> None:
    data = render_logo("T", (46, 139, 87))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (kind, width, height, depth, colour) == (b"IHDR", 512, 512, 8, 6)
    idat_len = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41 : 41 + idat_len])
    assert len(raw) == 512 * (1 + 512 * 4)
    centre_row = raw[256 * (1 + 2048) + 1 : 257 * (1 + 2048)]
    pixels = {centre_row[i : i + 4] for i in range(0, len(centre_row), 4)}
    assert bytes((46, 139, 87, 255)) in pixels and bytes((255, 255, 255, 255)) in pixels
    assert bytes(4) in pixels  # transparent corners of the row
