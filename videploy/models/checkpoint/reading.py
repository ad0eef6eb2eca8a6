"""Reading a checkpoint file without executing anything from it, and hashing it once.

Formats: a ``torch.save`` file (zip, or the legacy format), ``.safetensors``, a numpy ``.npz``.
A torch pickle is always read with ``torch.load(weights_only=True)``; the globals it names are
first read from its opcodes (:mod:`.pickle_scan`, bounded) and turned into an allowlist
(:mod:`.safe_globals`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videploy.errors import VideployError
from videploy.models.checkpoint.pickle_scan import PickleScanError, PickleTooLong, data_pickle_name, referenced_globals, scan_globals
from videploy.models.checkpoint.safe_globals import UNREADABLE_GLOBAL, CodeInCheckpoint, allowlist_for, refuse_code
from videploy.models.checkpoint.safetensors_file import looks_like_safetensors, read_safetensors

# A zip checkpoint may decompress to at most this many times its size on disk, plus MAX_INFLATION_EXTRA.
# torch.save does not compress (a real checkpoint inflates by nothing) and compressed .npz weights
# shrink by ~10%: anything beyond is a damaged file or one built to exhaust memory.
MAX_INFLATION_RATIO = 4
MAX_INFLATION_EXTRA = 64 << 20
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".safetensors", ".npz")


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file as read: what it holds and the SHA-256 of its bytes (bundle provenance)."""

    path: Path
    sha256: str
    content: Any


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def _regular_file_size(p: Path) -> int:
    """The size of ``p``; a :class:`VideployError` that says what it is when it is not a readable regular file."""
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise VideployError(f"checkpoint {p} is a broken symbolic link (to {os.readlink(p)}); point it at the checkpoint file") from None
        raise VideployError(f"checkpoint {p} does not exist; check the path (relative paths start at {Path.cwd()})") from None
    except OSError as exc:
        raise VideployError(f"checkpoint {p} cannot be read ({exc.strerror or exc}); check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        try:
            found = sorted(q.name for q in p.iterdir() if q.suffix in WEIGHT_SUFFIXES)
        except OSError:
            found = []
        hint = f" It holds {', '.join(found[:5])}: pass one of those." if found else ""
        raise VideployError(f"checkpoint {p} is a directory, not a checkpoint file.{hint}")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a character device" if stat.S_ISCHR(st.st_mode)
            else "a block device" if stat.S_ISBLK(st.st_mode)
            else "a named pipe" if stat.S_ISFIFO(st.st_mode)
            else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )  # fmt: skip
        raise VideployError(f"checkpoint {p} is {kind}, not a regular file; pass the checkpoint file itself")
    if st.st_size == 0:
        raise VideployError(f"checkpoint {p} is empty (0 bytes): the download or copy did not finish")
    return st.st_size


def _zip_kind(path: Path, size: int) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise VideployError(f"checkpoint {path} is a damaged zip archive ({exc}); download or copy it again") from None
    inflated = sum(i.file_size for i in infos)
    if inflated > MAX_INFLATION_RATIO * size + MAX_INFLATION_EXTRA:
        raise VideployError(
            f"checkpoint {path} is a zip archive of {size:,} bytes that decompresses to {inflated:,}: more than videploy accepts "
            f"({MAX_INFLATION_RATIO}x its size + {MAX_INFLATION_EXTRA >> 20} MiB; torch.save does not compress at all). "
            "The file is damaged or built to exhaust memory; videploy did not read it. Get the checkpoint again from its source."
        )
    names = [i.filename for i in infos]
    if any(n.endswith("constants.pkl") for n in names) and data_pickle_name(names):
        return "torchscript"
    if data_pickle_name(names):
        return "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise VideployError(
        f"checkpoint {path} is a zip archive but not one written by torch.save (it has no data.pkl; it holds: {shown or 'nothing'}). "
        "Pass the .pth/.pt file torch.save wrote, or unpack the archive if the checkpoint is inside it."
    )


def _sniff(path: Path, size: int) -> str:
    """What kind of file this is, from its first bytes (before any parsing)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path, size)
    if head.startswith(b"version https://git-lfs"):
        raise VideployError(f"checkpoint {path} is a Git LFS pointer, not the weights: run 'git lfs pull' in its repository (or download the file itself)")
    if looks_like_safetensors(head) or (path.suffix == ".safetensors" and head[:1] != b"\x80"):
        return "safetensors"
    if head.startswith(b"\x89HDF"):
        raise VideployError(f"checkpoint {path} is an HDF5 file (Keras / TensorFlow weights?), not a PyTorch checkpoint written by torch.save")
    if head.startswith(b"\x93NUMPY"):
        raise VideployError(f"checkpoint {path} is a single numpy array (.npy), not a state dict; save a dict of arrays with numpy.savez or torch.save")
    if head and head[0] != 0x80:  # every torch.save file starts with a pickle PROTO opcode or a zip header
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of the 512 bytes is still text
            text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else ""
        if text and all(c.isprintable() or c in "\r\n\t" for c in text):
            _refuse_text_pickle_code(path)
            preview = text.strip().splitlines()[0][:60] if text.strip() else ""
            raise VideployError(f"checkpoint {path} is a text file (it starts with {preview!r}), not a PyTorch checkpoint written by torch.save")
    return "torch"


def _refuse_text_pickle_code(path: Path) -> None:
    """A protocol-0 pickle is text: one that names code is reported as such, not as "a text file"."""
    try:
        with open(path, "rb") as f:
            names = scan_globals(f, 1)
    except PickleScanError as exc:
        names = exc.names
    refuse_code(names - {UNREADABLE_GLOBAL}, f"checkpoint {path}")


def _not_a_checkpoint(path: Path, exc: BaseException) -> VideployError:
    detail = str(exc).splitlines()[0][:200] if str(exc) else "no detail"
    if not isinstance(exc, PickleScanError):
        detail = f"{type(exc).__name__}: {detail}"
    return VideployError(
        f"checkpoint {path} is not a PyTorch checkpoint videploy can read ({detail}). "
        "Pass a file written by torch.save (an official .pth release, or torch.save(model.state_dict(), path)); "
        "if it was downloaded, check that the download finished."
    )


def _read_torch(p: Path) -> Any:
    source = f"checkpoint {p}"
    # Always torch's weights-only unpickler; names it does not know are first read from the pickle's
    # opcodes (nothing is unpickled) and allowed as inert stand-ins, data constructors or refused.
    try:
        names = referenced_globals(p)
    except PickleScanError as exc:
        refuse_code(exc.names - {UNREADABLE_GLOBAL}, source)  # code named before the failure is the real story
        if isinstance(exc, PickleTooLong):
            raise VideployError(
                f"{source}: its pickle has more than {exc.limit:,} instructions, where a full-size training checkpoint of the largest "
                "zoo model has ~50,000 (torch.save keeps tensor data outside the pickle). videploy stops there so that reading stays "
                "bounded: the file is damaged or built to exhaust time and memory. Save the weights alone: torch.save(model.state_dict(), path)."
            ) from None
        raise _not_a_checkpoint(p, exc) from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: every parse failure means "not a checkpoint"
        raise _not_a_checkpoint(p, exc) from None
    allow = allowlist_for(names, source)
    try:
        with torch.serialization.safe_globals(allow):
            return torch.load(p, map_location="cpu", weights_only=True)
    except CodeInCheckpoint as exc:
        raise exc.with_source(source) from None
    except Exception as exc:  # noqa: BLE001 - as above
        raise _not_a_checkpoint(p, exc) from None


def _read_content(p: Path, size: int) -> Any:
    kind = _sniff(p, size)
    if kind == "torchscript":
        raise VideployError(
            f"checkpoint {p} is a TorchScript archive (torch.jit.save), which carries code; videploy reads weights only. "
            "Load it with torch.jit.load where you trust it and save its weights: torch.save(m.state_dict(), 'weights.pth')"
        )
    if kind == "npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise VideployError(f"checkpoint {p} is a damaged .npz archive ({exc}); save it again with numpy.savez (arrays of numbers, no objects)") from None
    if kind == "safetensors":
        return read_safetensors(p, size)
    return _read_torch(p)


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """The object a checkpoint file holds, read without executing anything from it.

    Tensors come back on the CPU. Objects of classes videploy does not import come back as
    inert stand-ins (see :func:`~videploy.models.checkpoint.unresolved_class`). Raises
    :class:`VideployError` (or :class:`CodeInCheckpoint`) for a missing, empty, damaged or foreign
    file and for a pickle that asks to run code.
    """
    p = Path(path).expanduser()
    return _read_content(p, _regular_file_size(p))


class ChecksumMismatch(VideployError):
    """The file's SHA-256 is not the one expected (:func:`read_checkpoint_file` ``expected_sha256``)."""

    def __init__(self, path: Path, sha256: str, expected: str) -> None:
        self.path, self.sha256, self.expected = path, sha256, expected
        super().__init__(f"checkpoint {path} has the SHA-256 {sha256}, not the expected {expected}: it is another file, or it changed")


def read_checkpoint_file(path: str | os.PathLike[str], *, expected_sha256: str | None = None) -> CheckpointFile:
    """:func:`read_checkpoint` and the file's SHA-256, computed once.

    With ``expected_sha256``, a file with another hash raises :class:`ChecksumMismatch` before its
    content is read.
    """
    p = Path(path).expanduser()
    size = _regular_file_size(p)
    sha = file_sha256(p)
    if expected_sha256 is not None and sha != expected_sha256:
        raise ChecksumMismatch(p, sha, expected_sha256)
    return CheckpointFile(path=p, sha256=sha, content=_read_content(p, size))
