"""Make damaged video files for tests: truncated, empty, not-a-video, lying headers.

OpenCV's MP4 writer (like most encoders) puts the ``moov`` index after the media data, so a
truncated MP4 loses its index and cannot be opened at all. A streaming-friendly ("faststart")
MP4 has ``moov`` first; truncating that one leaves a file that opens, claims all its frames and
decodes only some — the case where the runtime must recount. :func:`faststart` rewrites an MP4
into that layout (moving ``moov`` and shifting the chunk offsets), without ffmpeg.
"""

from __future__ import annotations

import struct
from pathlib import Path

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size, typ = struct.unpack(">I4s", data[i : i + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            header = 16
        elif size == 0:
            size = end - i
        yield i, size, header, typ
        i += size


def _shift_offsets(moov: bytearray, delta: int) -> None:
    def walk(start: int, end: int) -> None:
        for i, size, header, typ in _boxes(moov, start, end):
            if typ in _CONTAINERS:
                walk(i + header, i + size)
            elif typ == b"stco":
                n = struct.unpack(">I", moov[i + 12 : i + 16])[0]
                for k in range(n):
                    o = i + 16 + 4 * k
                    struct.pack_into(">I", moov, o, struct.unpack(">I", moov[o : o + 4])[0] + delta)
            elif typ == b"co64":
                n = struct.unpack(">I", moov[i + 12 : i + 16])[0]
                for k in range(n):
                    o = i + 16 + 8 * k
                    struct.pack_into(">Q", moov, o, struct.unpack(">Q", moov[o : o + 8])[0] + delta)

    walk(0, len(moov))


def faststart(src: Path, dst: Path) -> Path:
    """Copy MP4 ``src`` to ``dst`` with the ``moov`` box moved before ``mdat``."""
    data = Path(src).read_bytes()
    boxes = list(_boxes(data))
    moov = next(b for b in boxes if b[3] == b"moov")
    mdat_pos = next(b[0] for b in boxes if b[3] == b"mdat")
    if moov[0] < mdat_pos:
        dst.write_bytes(data)
        return dst
    moov_bytes = bytearray(data[moov[0] : moov[0] + moov[1]])
    _shift_offsets(moov_bytes, len(moov_bytes))
    out = bytearray()
    for i, size, _, typ in boxes:
        if typ == b"moov":
            continue
        if i == mdat_pos:
            out += moov_bytes
        out += data[i : i + size]
    dst.write_bytes(bytes(out))
    return dst


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = Path(src).read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
