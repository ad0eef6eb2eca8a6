"""The globals a pickle names, read from its opcodes in bounded time and memory; nothing is unpickled.

The scan streams: it reads the pickle in chunks, keeps only short strings (module and class names
are short; longer strings and byte strings are skipped unread), and stops after
:data:`MAX_OPCODES` instructions. A real checkpoint's pickle is small (torch.save stores tensor
data beside it): the full-size Video-FocalNet-B state dict takes ~23,000 instructions (~10 ms),
its training checkpoint with AdamW state ~51,000 (~60 ms).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import pickletools
import zipfile
from pathlib import Path
from typing import BinaryIO

from videploy.models.checkpoint.safe_globals import UNREADABLE_GLOBAL

MAX_OPCODES = 1_000_000  # ~20x a full-size training checkpoint of the largest zoo model (below)
_KEEP = 1024  # longest string kept (module and class names); longer ones are skipped unread
_MEMO_CHARS = 8 << 20  # memoised strings kept, in characters (a name read back after this is unreadable)
_CHUNK = 1 << 16


class PickleScanError(Exception):
    """The scan could not read the pickle; ``names`` holds the globals seen before it stopped."""

    def __init__(self, reason: str, names: set[str] | None = None) -> None:
        super().__init__(reason)
        self.names: set[str] = names if names is not None else set()


class PickleTooLong(PickleScanError):
    """The pickle has more instructions than :data:`MAX_OPCODES` (``limit``)."""

    def __init__(self, limit: int, names: set[str] | None = None) -> None:
        super().__init__(f"the pickle has more than {limit:,} instructions", names)
        self.limit = limit


# opcode byte -> (name, argument length: >= 0 fixed, else pickletools' variable-length codes)
_OPS: dict[int, tuple[str, int]] = {op.code.encode("latin-1")[0]: (op.name, op.arg.n if op.arg else 0) for op in pickletools.opcodes}
_LINE, _LEN1, _LEN4, _LEN4U, _LEN8U = (pickletools.UP_TO_NEWLINE, pickletools.TAKEN_FROM_ARGUMENT1, pickletools.TAKEN_FROM_ARGUMENT4, pickletools.TAKEN_FROM_ARGUMENT4U, pickletools.TAKEN_FROM_ARGUMENT8U)
_LENGTH_WIDTH = {_LEN1: 1, _LEN4: 4, _LEN4U: 4, _LEN8U: 8}
_UNICODE_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"})
_BYTESTRING_OPS = frozenset({"SHORT_BINSTRING", "BINSTRING"})  # Python 2 str: read as latin-1 text
_NO_STACK_OPS = frozenset({"PROTO", "FRAME"})  # framing: leaves the stack as it is


class _Chunks:
    """A pickle stream read in chunks; small reads come from the buffer, large arguments are skipped."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._buf = b""
        self._pos = 0
        self.offset = 0  # bytes consumed before the buffer

    @property
    def position(self) -> int:
        return self.offset + self._pos

    def _ends_early(self, where: str = "") -> PickleScanError:
        return PickleScanError(f"the pickle ends early, at byte {self.position}{where} (the file is truncated or damaged)")

    def _refill(self) -> bool:
        rest = self._buf[self._pos :]
        chunk = self._raw.read(_CHUNK)
        self.offset += self._pos
        self._buf, self._pos = rest + chunk, 0
        return bool(chunk)

    def at_end(self) -> bool:
        return self._pos >= len(self._buf) and not self._refill()

    def byte(self) -> int:
        if self._pos >= len(self._buf) and not self._refill():
            raise self._ends_early()
        self._pos += 1
        return self._buf[self._pos - 1]

    def read(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            if not self._refill():
                raise self._ends_early()
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def skip(self, n: int) -> None:
        have = len(self._buf) - self._pos
        if n <= have:
            self._pos += n
            return
        self.offset += len(self._buf)
        self._buf, self._pos = b"", 0
        n -= have
        while n > 0:
            chunk = self._raw.read(min(n, _CHUNK))
            if not chunk:
                raise self._ends_early()
            self.offset += len(chunk)
            n -= len(chunk)

    def line(self) -> bytes | None:
        """The bytes up to the next newline (consumed with it); None when longer than ``_KEEP`` (skipped)."""
        kept = b""
        too_long = False
        while True:
            end = self._buf.find(b"\n", self._pos)
            stop = end if end >= 0 else len(self._buf)
            if not too_long:
                kept += self._buf[self._pos : stop]
                too_long = len(kept) > _KEEP
            if end >= 0:
                self._pos = end + 1
                return None if too_long else kept
            self._pos = stop
            if not self._refill():
                raise self._ends_early(", inside a text line")


def python3_name(module: str, name: str) -> str:
    # torch.save writes protocol 2, which spells Python 3 names the Python 2 way (__builtin__.set);
    # map them exactly as the unpickler will before it checks its allowlist
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _text_line(raw: bytes | None, name: str) -> str | None:
    if raw is None:
        return None
    if name == "UNICODE":
        return raw.decode("raw-unicode-escape")
    if name == "STRING" and len(raw) >= 2 and raw[:1] == raw[-1:] and raw[:1] in (b"'", b'"'):
        return codecs.escape_decode(raw[1:-1])[0].decode("latin-1")
    return raw.decode("latin-1")


def _argument(src: _Chunks, name: str, n: int, names: set[str]) -> tuple[str | None, int]:
    """Consume an opcode's argument: ``(string value or None, memo index or -1)``; GLOBAL/INST add to ``names``."""
    if n > 0:
        arg = src.read(n)
        return None, int.from_bytes(arg, "little") if name in ("BINPUT", "BINGET", "LONG_BINPUT", "LONG_BINGET") else -1
    if n == _LINE:
        first = src.line()
        if name in ("GLOBAL", "INST"):
            second = src.line()
            if first is None or second is None:
                names.add(UNREADABLE_GLOBAL)
            else:
                names.add(python3_name(first.decode("utf-8", "replace"), second.decode("utf-8", "replace")))
        elif name in ("PUT", "GET"):
            try:
                return None, int(first or b"")
            except ValueError:
                raise PickleScanError(f"{name} at offset {src.position} has no memo index") from None
        elif name in ("STRING", "UNICODE"):
            return _text_line(first, name), -1
        return None, -1
    # a length, then that many bytes
    length = int.from_bytes(src.read(_LENGTH_WIDTH[n]), "little", signed=n == _LEN4)
    if length < 0:
        raise PickleScanError(f"{name} at offset {src.position} has a negative length")
    if (name in _UNICODE_OPS or name in _BYTESTRING_OPS) and length <= _KEEP:
        data = src.read(length)
        return (data.decode("utf-8", "surrogatepass") if name in _UNICODE_OPS else data.decode("latin-1")), -1
    src.skip(length)
    return None, -1


def scan_globals(raw: BinaryIO, pickles: int) -> set[str]:
    """Every ``module.name`` the next ``pickles`` pickles of ``raw`` reference (fewer if the stream
    ends cleanly between two). Tracks strings through the memo, as STACK_GLOBAL takes them from the stack.

    Raises :class:`PickleScanError` (with the names seen so far) for bytes that are not a pickle,
    and :class:`PickleTooLong` past :data:`MAX_OPCODES`.
    """
    names: set[str] = set()
    src = _Chunks(raw)
    count = 0
    try:
        for index in range(pickles):
            if index and src.at_end():
                break
            recent: list[str | None] = []
            memo: dict[int, str] = {}
            memo_len = memo_chars = 0
            while True:
                code = src.byte()
                count += 1
                if count > MAX_OPCODES:
                    raise PickleTooLong(MAX_OPCODES)
                op = _OPS.get(code)
                if op is None:
                    raise PickleScanError(f"byte {code:#04x} at offset {src.position - 1} is not a pickle instruction")
                name, n = op
                value, index_arg = _argument(src, name, n, names) if n else (None, -1)
                if name == "STOP":
                    break
                if name == "STACK_GLOBAL":
                    if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                        names.add(python3_name(recent[-2], recent[-1]))
                    else:
                        names.add(UNREADABLE_GLOBAL)
                    recent.append(None)
                elif name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
                    if name == "MEMOIZE":
                        index_arg, memo_len = memo_len, memo_len + 1
                    else:
                        memo_len = max(memo_len, index_arg + 1)
                    top = recent[-1] if recent else None
                    if isinstance(top, str) and memo_chars + len(top) <= _MEMO_CHARS:
                        memo[index_arg] = top
                        memo_chars += len(top)
                    else:
                        memo.pop(index_arg, None)
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    recent.append(memo.get(index_arg))
                elif name not in _NO_STACK_OPS:
                    recent.append(value)
                del recent[:-4]
    except PickleScanError as exc:
        exc.names |= names
        raise
    except ValueError as exc:  # a string that does not decode (UnicodeDecodeError, bad escapes)
        raise PickleScanError(f"a string in the pickle is not valid text ({exc})", names) from None
    return names


def data_pickle_name(names: list[str]) -> str | None:
    """The member of a torch.save zip archive that holds the pickle (``<archive>/data.pkl``)."""
    return next((n for n in names if n == "data.pkl" or n.endswith("/data.pkl")), None)


def referenced_globals(path: Path) -> set[str]:
    """The globals a torch.save file's pickle(s) reference: the zip format's ``data.pkl``, or the legacy
    format's pickles (magic number, protocol, system info, the object, the storage keys)."""
    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as z:
                member = data_pickle_name(z.namelist())
                if member is None:
                    raise PickleScanError("the zip archive has no data.pkl")
                with z.open(member) as pkl:
                    return scan_globals(pkl, 1)
        f.seek(0)
        return scan_globals(f, 5)
