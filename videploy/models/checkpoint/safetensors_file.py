"""Reading a ``.safetensors`` file: the header is checked against the file before anything is allocated.

Layout: an 8-byte little-endian header length N, N bytes of JSON (``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``), then the tensor data; offsets count from
the start of the data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from videploy.errors import VideployError

MAGIC_OFFSET = 8  # the JSON header starts after its 8-byte length
MAX_HEADER = 100_000_000  # the safetensors library's own limit on the header
# bits per element of every dtype the format names (sub-byte float types pack elements)
_ITEM_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


def looks_like_safetensors(head: bytes) -> bool:
    """A header length the format allows, then JSON: never a pickle (0x80) or a zip (``PK``)."""
    return len(head) > MAGIC_OFFSET and head[MAGIC_OFFSET : MAGIC_OFFSET + 1] == b"{" and int.from_bytes(head[:MAGIC_OFFSET], "little") <= MAX_HEADER


def _damaged(path: Path, why: str) -> VideployError:
    return VideployError(f"checkpoint {path} is a damaged .safetensors file: {why}. Download or copy it again (or save it again with safetensors.torch.save_file).")


def _check_entry(path: Path, name: str, entry: Any, data_size: int) -> None:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise _damaged(path, f"the header entry of tensor {name!r} lacks dtype, shape or data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise _damaged(path, f"tensor {name!r} has the shape {shape!r}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1]):
        raise _damaged(path, f"tensor {name!r} has the data offsets {offsets!r}, not [begin, end]")
    if offsets[1] > data_size:
        raise _damaged(path, f"tensor {name!r} lies at bytes {offsets[0]:,}-{offsets[1]:,} of the data, but the file holds only {data_size:,} bytes of data (it is truncated)")
    bits = _ITEM_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        raise _damaged(path, f"tensor {name!r} has the dtype {dtype!r}, which the safetensors format does not define")
    need = (math.prod(shape) * bits + 7) // 8
    if offsets[1] - offsets[0] != need:
        raise _damaged(path, f"tensor {name!r} of shape {shape} ({dtype}) needs {need:,} bytes, but its offsets span {offsets[1] - offsets[0]:,}")


def check_header(path: Path, size: int) -> int:
    """Check the header against the file's ``size``; returns the number of tensors. Nothing large is read."""
    with open(path, "rb") as f:
        head = f.read(MAGIC_OFFSET)
        if len(head) < MAGIC_OFFSET:
            raise _damaged(path, f"it has {len(head)} bytes, fewer than the 8 of the header length")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER:
            raise _damaged(path, f"its header length is {n:,} bytes (the format allows at most {MAX_HEADER:,})")
        if MAGIC_OFFSET + n > size:
            raise _damaged(path, f"its header is {n:,} bytes long, but the file has only {size - MAGIC_OFFSET:,} after the length (it is truncated)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise _damaged(path, f"its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    data_size = size - MAGIC_OFFSET - n
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    for name, entry in tensors.items():
        _check_entry(path, name, entry, data_size)
    return len(tensors)


def read_safetensors(path: Path, size: int) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file, on the CPU (the header checked first)."""
    from videploy.optional import require

    check_header(path, size)
    st = require("safetensors.torch", f"reading the .safetensors checkpoint {path}")
    try:
        return st.load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: the bytes are not what the header says
        raise _damaged(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}") from None
