"""Load a checkpoint into a videploy model: read it safely, unwrap it, convert it, load it strictly.

``load_checkpoint(model, source)`` is the one entry point. ``source`` is a file written by
``torch.save`` (an official release, a training-script checkpoint, our own) or an in-memory state
dict (tensors or numpy arrays). The steps:

1. **read** (:func:`read_checkpoint`): always ``torch.load(weights_only=True)``, never ``False``.
   Official training scripts also pickle their configuration (Video-FocalNet saves a yacs
   ``CfgNode`` beside the weights; AdaFocus may store a numpy ``best_acc1``), which torch's allowlist
   refuses. So the global names a file references are first read from its pickle opcodes (nothing
   is unpickled): names that run code (``os.system``, ``eval``, ``subprocess`` ...) are refused at
   once; numpy values, paths and dates map to their data constructors; every other class becomes an
   inert stand-in registered with ``torch.serialization.safe_globals`` (it is never imported, and an
   object of it is read as a plain ``OrderedDict``). A pickle that *calls* an unknown callable
   (REDUCE) is refused by name. videploy never executes code from a checkpoint.
2. **unwrap** (:func:`unwrap_state_dict`): ``{"model": sd}``, ``{"state_dict": sd, "epoch": ...}``,
   ``module.`` (DistributedDataParallel) and ``_orig_mod.`` (``torch.compile``) prefixes.
3. **convert** with the model's family ``convert`` (official key names -> ours).
4. **load strictly**; on a mismatch the error names the missing / unexpected / wrongly shaped keys,
   groups them by the family's parts, and says which configuration the checkpoint fits (from the
   family's ``infer``) or which other family it belongs to.
"""

from __future__ import annotations

import _compat_pickle
import datetime
import functools
import hashlib
import io
import os
import pathlib
import pickletools
import re
import zipfile
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

import numpy as np
import torch

from videploy.errors import VideployError
from videploy.models import registry

__all__ = [
    "CodeInCheckpoint",
    "LoadReport",
    "unresolved_class",
    "file_sha256",
    "load_checkpoint",
    "read_checkpoint",
    "unwrap_state_dict",
]

# Containers official and common training scripts put the weights in, in the order we look.
CONTAINER_KEYS = ("model", "state_dict", "model_state", "model_state_dict", "module")
# Prefixes wrappers add to every key: DistributedDataParallel / DataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 5  # keys listed per kind in a mismatch message


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_checkpoint` loaded, for logs and bundle provenance."""

    source: str  # the file path, or "<state dict>"
    sha256: str | None  # of the file; None for an in-memory state dict
    num_tensors: int  # entries loaded into the model
    family: str | None  # the registry family whose convert/infer was used
    unwrapped: tuple[str, ...] = ()  # containers and prefixes removed, outermost first: "['model']", "prefix 'module.'"
    dropped_keys: tuple[str, ...] = ()  # official keys the family's convert drops (unused heads, ...)
    other_entries: tuple[str, ...] = ()  # top-level entries beside the weights (optimizer, epoch, config, ...)
    missing_keys: tuple[str, ...] = ()  # only with strict=False: model entries the checkpoint lacks
    unexpected_keys: tuple[str, ...] = ()  # only with strict=False: checkpoint entries the model lacks
    mismatched_keys: tuple[str, ...] = ()  # only with strict=False: entries skipped for a different shape


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Step 1: reading a file without executing anything from it
# --------------------------------------------------------------------------------------------


class CodeInCheckpoint(VideployError):
    """The pickle asks to call something; videploy refuses instead of running it."""

    def __init__(self, callable_name: str, dangerous: bool, source: str = "the checkpoint"):
        self.callable_name = callable_name
        self.dangerous = dangerous
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        head = (
            f"{self.source}: the file tries to run code when it is loaded (it calls {self.callable_name}). "
            "videploy never executes code from checkpoints, so it did not load the file."
        )
        if self.dangerous:
            return head + (
                f" {self.callable_name} can run arbitrary commands: treat the file as malicious and do not open it "
                "with torch.load(weights_only=False) or pickle either."
            )
        return head + (
            " If you trust where the file comes from, open it in the environment that wrote it and save the "
            "weights alone: torch.save(model.state_dict(), 'weights.pth')."
        )

    def with_source(self, source: str) -> "CodeInCheckpoint":
        return CodeInCheckpoint(self.callable_name, self.dangerous, source)


UNRESOLVED_ATTR = "_videploy_unresolved_class"


def unresolved_class(obj: Any) -> str | None:
    """``module.name`` of the class an inert stand-in was read in place of, else ``None``.

    Objects of classes videploy does not import (a yacs ``CfgNode``, a scheduler, a whole pickled
    ``nn.Module``) are read as plain ``OrderedDict`` s: their dict items as items, their pickled
    ``__dict__`` state as attributes. Nothing of the real class is imported or run.
    """
    return getattr(obj, "__dict__", {}).get(UNRESOLVED_ATTR) if isinstance(obj, OrderedDict) else None


# Names whose only purpose in a pickle is to run commands or code. Refused as soon as they are
# referenced (not only when called), and reported as malicious.
_CODE_MODULES = frozenset(
    """os posix nt subprocess sys shutil importlib runpy pickle _pickle cPickle marshal code codeop ctypes
    _ctypes socket pty webbrowser multiprocessing commands popen2 platform signal pdb bdb timeit trace
    cProfile profile asyncio threading _thread urllib http ftplib smtplib telnetlib xmlrpc zipimport pkgutil
    site shelve dbm tempfile glob io _io _posixsubprocess _winapi msvcrt winreg __builtin__ builtins dill
    cloudpickle joblib""".split()
)
_TORCH_CODE_PREFIXES = ("torch.load", "torch.jit", "torch.hub", "torch.package", "torch.ops", "torch.classes", "torch.utils.cpp_extension", "torch._dynamo", "torch.compile")


def _refers_to_code(qualified: str) -> bool:
    top = qualified.split(".")[0]
    if top in _CODE_MODULES:
        return True
    return any(qualified == p or qualified.startswith(p + ".") for p in _TORCH_CODE_PREFIXES)


class _StandInMeta(type):
    """Metaclass of stand-ins: *calling* one (pickle REDUCE: ``f(*args)``) is running code and refused;
    creating an instance without a call (pickle NEWOBJ: ``cls.__new__(cls)``, how plain objects and
    dict subclasses are pickled) gives inert data."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise CodeInCheckpoint(cls._videploy_qualname, dangerous=False)


def _stand_in(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")

    def new(cls: type, *args: Any, **kwargs: Any) -> OrderedDict:
        # An exact OrderedDict: torch's weights-only unpickler allows SETITEMS (dict subclasses such as
        # yacs CfgNode) and BUILD (__dict__ state) on exactly that type and nothing looser.
        obj: OrderedDict = OrderedDict()
        obj.__dict__[UNRESOLVED_ATTR] = qualified
        return obj

    return _StandInMeta(name or "Unresolved", (), {"__module__": module or "unknown", "__new__": new, "_videploy_qualname": qualified})


@functools.lru_cache(maxsize=1)
def _data_globals() -> dict[str, Any]:
    """Globals that only build data and that training scripts do pickle: numpy values, paths, dates."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    allowed: dict[str, Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{mod}._reconstruct"] = core.multiarray._reconstruct
        allowed[f"{mod}.scalar"] = core.multiarray.scalar
    allowed["numpy.ndarray"] = np.ndarray
    allowed["numpy.dtype"] = np.dtype
    # paths in configs are read as pure paths, which never touch the file system
    for name, cls in (("PosixPath", pathlib.PurePosixPath), ("PurePosixPath", pathlib.PurePosixPath), ("WindowsPath", pathlib.PureWindowsPath), ("PureWindowsPath", pathlib.PureWindowsPath), ("Path", pathlib.PurePath)):
        allowed[f"pathlib.{name}"] = cls
    for name in ("datetime", "date", "time", "timedelta", "timezone"):
        allowed[f"datetime.{name}"] = getattr(datetime, name)
    for cls in (set, frozenset, complex, bytearray, slice, range):
        allowed[f"builtins.{cls.__name__}"] = cls
    return allowed


def _numpy_dtype_classes() -> list[type]:
    # numpy dtype instances are rebuilt with a BUILD on their per-dtype class (numpy.dtypes.Float64DType, ...)
    dtypes = getattr(np, "dtypes", None)
    return [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []


_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"})


def _python3_name(module: str, name: str) -> str:
    # torch.save writes protocol 2, which spells Python 3 names the Python 2 way (__builtin__.set);
    # map them exactly as the unpickler will before it checks its allowlist
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _pickle_globals(stream: BinaryIO, pickles: int) -> set[str]:
    """Every ``module.name`` the next ``pickles`` pickles of ``stream`` reference, read opcode by opcode
    (nothing is unpickled). Tracks strings through the memo, as STACK_GLOBAL takes them from the stack."""
    names: set[str] = set()
    for _ in range(pickles):
        recent: list[Any] = []
        memo: dict[int, Any] = {}
        for op, arg, _pos in pickletools.genops(stream):
            if op.name in ("GLOBAL", "INST"):
                module, name = str(arg).split(" ", 1)
                names.add(_python3_name(module, name))
                recent.append(None)
            elif op.name == "STACK_GLOBAL":
                if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                    names.add(_python3_name(recent[-2], recent[-1]))
                else:
                    names.add("<unreadable global>")
                recent.append(None)
            elif op.name in _STRING_OPS:
                recent.append(arg)
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = recent[-1] if recent else None
            elif op.name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(int(arg)))
            else:
                recent.append(None)
            del recent[:-4]
    return names


def _referenced_globals(path: Path) -> set[str]:
    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(path) as z:
                data = next(n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
                with z.open(data) as pkl:
                    return _pickle_globals(io.BytesIO(pkl.read()), 1)
        f.seek(0)
        # legacy format: magic number, protocol, system info, the object, the storage keys
        return _pickle_globals(f, 5)


def _allowlist_for(names: set[str], source: str) -> list[Any]:
    """``safe_globals`` entries for ``names``: real data constructors, or inert stand-ins; code is refused."""
    from torch import _weights_only_unpickler as wou

    torch_allowed = set(wou._get_allowed_globals())
    entries: list[Any] = list(_numpy_dtype_classes())
    for qualified in sorted(names):
        if qualified in torch_allowed:
            continue
        real = _data_globals().get(qualified)
        if real is None and (qualified == "<unreadable global>" or _refers_to_code(qualified)):
            module, _, name = qualified.rpartition(".")
            shown = f"os.{name}" if module in ("posix", "nt") else qualified  # os.system pickles as posix.system
            raise CodeInCheckpoint(shown, dangerous=True, source=source)
        entries.append((real if real is not None else _stand_in(qualified), qualified))
    return entries


def _sniff(path: Path) -> str:
    """What kind of file this is, from its first bytes (before any parsing)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile as exc:
            raise VideployError(f"checkpoint {path} is a damaged zip archive ({exc}); download or copy it again") from None
        if any(n.endswith("constants.pkl") for n in names) and any(n.endswith("data.pkl") for n in names):
            return "torchscript"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise VideployError(
            f"checkpoint {path} is a zip archive but not one written by torch.save (it has no data.pkl; it holds: {shown or 'nothing'}). "
            "Pass the .pth/.pt file torch.save wrote, or unpack the archive if the checkpoint is inside it."
        )
    if head.startswith(b"version https://git-lfs"):
        raise VideployError(f"checkpoint {path} is a Git LFS pointer, not the weights: run 'git lfs pull' in its repository (or download the file itself)")
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
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
            preview = text.strip().splitlines()[0][:60] if text.strip() else ""
            raise VideployError(f"checkpoint {path} is a text file (it starts with {preview!r}), not a PyTorch checkpoint written by torch.save")
    return "torch"


def _not_a_checkpoint(path: Path, exc: BaseException) -> VideployError:
    return VideployError(
        f"checkpoint {path} is not a PyTorch checkpoint videploy can read ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}). "
        "Pass a file written by torch.save (an official .pth release, or torch.save(model.state_dict(), path)); "
        "if it was downloaded, check that the download finished."
    )


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """The object a checkpoint file holds, read without executing anything from it.

    Tensors come back on the CPU. Objects of classes videploy does not import come back as
    inert stand-ins (see :func:`unresolved_class`). Raises :class:`VideployError` (or :class:`CodeInCheckpoint`) for a
    missing, empty or foreign file and for a pickle that asks to run code.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise VideployError(f"checkpoint {p} does not exist; check the path (relative paths start at {Path.cwd()})")
    if p.is_dir():
        found = sorted(q.name for q in p.iterdir() if q.suffix in (".pth", ".pt", ".bin", ".ckpt", ".tar", ".safetensors"))
        hint = f" It holds {', '.join(found[:5])}: pass one of those." if found else ""
        raise VideployError(f"checkpoint {p} is a directory, not a checkpoint file.{hint}")
    if p.stat().st_size == 0:
        raise VideployError(f"checkpoint {p} is empty (0 bytes): the download or copy did not finish")
    kind = _sniff(p)
    if kind == "torchscript":
        raise VideployError(
            f"checkpoint {p} is a TorchScript archive (torch.jit.save), which carries code; videploy reads weights only. "
            "Load it with torch.jit.load where you trust it and save its weights: torch.save(m.state_dict(), 'weights.pth')"
        )
    if kind == "npz":
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if kind == "safetensors":
        from videploy.optional import require

        st = require("safetensors.torch", f"reading the .safetensors checkpoint {p}")
        return st.load_file(str(p), device="cpu")
    # Always torch's weights-only unpickler; names it does not know are first read from the pickle's
    # opcodes (nothing is unpickled) and allowed as inert stand-ins, data constructors or refused.
    try:
        allow = _allowlist_for(_referenced_globals(p), f"checkpoint {p}")
    except CodeInCheckpoint:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: every parse failure means "not a checkpoint"
        raise _not_a_checkpoint(p, exc) from None
    try:
        with torch.serialization.safe_globals(allow):
            return torch.load(p, map_location="cpu", weights_only=True)
    except CodeInCheckpoint as exc:
        raise exc.with_source(f"checkpoint {p}") from None
    except Exception as exc:  # noqa: BLE001 - as above
        raise _not_a_checkpoint(p, exc) from None


# --------------------------------------------------------------------------------------------
# Step 2: unwrapping containers
# --------------------------------------------------------------------------------------------


def _tensor_like(v: Any) -> bool:
    return isinstance(v, (torch.Tensor, np.ndarray, np.generic))


def _is_state_dict(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(isinstance(k, str) for k in obj) and all(_tensor_like(v) for v in obj.values())


def _module_state_dict(obj: Any) -> dict[str, Any] | None:
    """The state dict of a whole pickled ``nn.Module`` (``torch.save(model)``), read from its stand-in."""
    if unresolved_class(obj) is None or "_parameters" not in vars(obj):
        return None
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        st = vars(node)
        for k, v in (st.get("_parameters") or {}).items():
            if v is not None:
                out[prefix + k] = v
        skip = st.get("_non_persistent_buffers_set") or set()
        for k, v in (st.get("_buffers") or {}).items():
            if v is not None and k not in skip:
                out[prefix + k] = v
        for k, child in (st.get("_modules") or {}).items():
            if unresolved_class(child) is not None:
                walk(child, f"{prefix}{k}.")

    walk(obj, "")
    return out or None


def _holds_weights(obj: Any, depth: int) -> bool:
    """A state dict, a pickled module, or (``depth`` levels down) a container of one."""
    if _is_state_dict(obj) or _module_state_dict(obj) is not None:
        return True
    if depth <= 0:
        return False
    entries = obj if isinstance(obj, Mapping) else {}
    return any(_holds_weights(entries[k], depth - 1) for k in CONTAINER_KEYS if k in entries)


def _describe(obj: Any) -> str:
    if unresolved_class(obj) is not None:
        return f"an object of class {unresolved_class(obj)}"
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {list(obj.shape)}"
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:8]]
        return f"a dict with entries {keys}{' ...' if len(obj) > 8 else ''}" if obj else "an empty dict"
    return f"a {type(obj).__name__}"


def unwrap_state_dict(obj: Any, label: str = "the checkpoint") -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """``(state_dict, unwrapped, other_entries)``: the weights inside a loaded checkpoint object.

    Looks into ``model`` / ``state_dict`` / ``model_state`` / ``model_state_dict`` / ``module`` (at
    most two levels, e.g. AdaFocus' ``{"epoch", "best_acc1", "state_dict", "optimizer"}``), else into
    the one entry that is a state dict; reads a whole pickled ``nn.Module``; strips ``module.`` and
    ``_orig_mod.`` prefixes that every key carries.
    """
    steps: list[str] = []
    others: tuple[str, ...] = ()
    top = obj
    for _level in range(3):
        module_sd = _module_state_dict(obj)
        if module_sd is not None:
            steps.append(f"module object {unresolved_class(obj)}")
            obj = module_sd
        if _is_state_dict(obj):
            break
        if not isinstance(obj, Mapping) or not obj:
            break
        entries = obj
        key = next((k for k in CONTAINER_KEYS if k in entries and _holds_weights(entries[k], 2)), None)
        if key is None:
            nested = [k for k, v in entries.items() if _holds_weights(v, 0)]
            if len(nested) != 1:
                break
            key = nested[0]
        if not steps:
            others = tuple(str(k) for k in entries if k != key)
        steps.append(f"[{key!r}]")
        obj = entries[key]
    if not _is_state_dict(obj):
        inner = f" (inside {''.join(s for s in steps if s.startswith('['))}: {_describe(obj)})" if steps else ""
        raise VideployError(
            f"{label} holds {_describe(top)}{inner}, not a state dict (a mapping of parameter names to tensors). "
            f"videploy looks for the weights under {', '.join(repr(k) for k in CONTAINER_KEYS)}; "
            "save them with torch.save(model.state_dict(), path) or pass the state dict itself."
        )
    sd = dict(obj)
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                steps.append(f"prefix {prefix!r}")
                stripped = True
    if any("._orig_mod." in k for k in sd):  # a torch.compile'd submodule
        sd = {k.replace("._orig_mod.", "."): v for k, v in sd.items()}
        steps.append("'._orig_mod.' segments")
    return sd, tuple(steps), others


# --------------------------------------------------------------------------------------------
# Steps 3-4: convert, compare, load
# --------------------------------------------------------------------------------------------


def _as_tensor(key: str, value: Any, label: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise VideployError(f"{label}: entry {key!r} is a numpy array of Python objects, not numbers")
        # (not np.ascontiguousarray: it turns 0-d scalars such as num_batches_tracked into shape (1,))
        if not (arr.flags.c_contiguous and arr.flags.writeable):  # torch.from_numpy warns on read-only memory
            arr = arr.copy(order="C")
        return torch.from_numpy(arr)
    if isinstance(value, (bool, int, float)):
        return torch.tensor(value)
    raise VideployError(f"{label}: entry {key!r} is a {type(value).__name__}, not a tensor or array")


def _family_of(model: torch.nn.Module) -> registry.Family | None:
    """The registry family a model belongs to: by its ``family`` name (class attribute), else the
    family whose ``build`` is the model's class (components registered with the class itself)."""
    name = getattr(type(model), "family", None) or getattr(model, "family", None)
    entry = registry.REGISTRY.get(name) if isinstance(name, str) else None
    if entry is not None and entry.is_family:
        return entry.family
    for entry in registry.REGISTRY.values():
        if entry.is_family and entry.family.build is type(model):
            return entry.family
    return None


_CONVERT_ERRORS = (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError)


def _safe_convert(family: registry.Family, sd: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return dict(family.convert(sd))
    except _CONVERT_ERRORS:
        return None


def _safe_infer(family: registry.Family, sd: Mapping[str, Any]) -> dict[str, Any]:
    try:
        out = family.infer(sd)
    except _CONVERT_ERRORS:
        return {}
    return dict(out) if isinstance(out, Mapping) else {}


def load_checkpoint(model: torch.nn.Module, source: str | os.PathLike[str] | Mapping[str, Any], *, strict: bool = True) -> LoadReport:
    """Load ``source`` (a checkpoint file or a state dict) into ``model``; see the module docstring.

    With ``strict=True`` (default) every model entry must be present with the same shape and the
    checkpoint may hold nothing else (after the family's ``convert``), or a :class:`VideployError`
    explains the mismatch. With ``strict=False`` the matching entries load and the report lists the
    rest. Values are cast to the model's dtypes, as ``load_state_dict`` does.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        raw = read_checkpoint(path)
        label, sha = f"checkpoint {path}", file_sha256(path)
    elif isinstance(source, Mapping):
        raw, label, sha = source, "the state dict", None
    else:
        raise VideployError(f"load_checkpoint: source must be a checkpoint path or a state dict, got {type(source).__name__}")
    sd, unwrapped, others = unwrap_state_dict(raw, label)
    tensors = {k: _as_tensor(k, v, label) for k, v in sd.items()}

    family = _family_of(model)
    converted = _safe_convert(family, tensors) if family is not None else dict(tensors)
    if converted is None:  # convert could not read it: most likely another family's checkpoint
        converted = dict(tensors)
    kept_ids = {id(v) for v in converted.values()}
    dropped = tuple(k for k, v in tensors.items() if k not in converted and id(v) not in kept_ids)

    expected = model.state_dict()
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    wrong = [k for k in expected if k in converted and tuple(converted[k].shape) != tuple(expected[k].shape)]
    if strict and (missing or unexpected or wrong):
        raise VideployError(_mismatch_message(model, family, label, tensors, converted, expected, missing, unexpected, wrong))

    to_load = {k: v for k, v in converted.items() if k in expected and k not in wrong}
    try:
        model.load_state_dict(to_load, strict=strict)
    except RuntimeError as exc:  # dtype casts that copy_ refuses (complex -> float, ...)
        first = str(exc).strip().splitlines()
        raise VideployError(f"{label} does not load into {type(model).__name__}: {' '.join(first[:3])[:400]}") from None
    return LoadReport(
        source=str(path) if sha is not None else "<state dict>",
        sha256=sha,
        num_tensors=len(to_load),
        family=family.name if family is not None else None,
        unwrapped=unwrapped,
        dropped_keys=dropped,
        other_entries=others,
        missing_keys=tuple(missing),
        unexpected_keys=tuple(unexpected),
        mismatched_keys=tuple(wrong),
    )


# --------------------------------------------------------------------------------------------
# Explaining a mismatch
# --------------------------------------------------------------------------------------------


def _norm(v: Any) -> Any:
    """Comparable form of a kwarg value (tuples and lists alike, numpy / tensor scalars as numbers)."""
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, Mapping):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (np.generic, torch.Tensor)) and getattr(v, "ndim", 0) == 0:
        return v.item()
    return v


def _differs(inferred: Any, current: Any) -> bool:
    """Does an inferred kwarg contradict the model's? Nested dicts compare only the inferred fields."""
    if isinstance(inferred, Mapping) and isinstance(current, Mapping):
        return any(k not in current or _differs(v, current[k]) for k, v in inferred.items())
    return _norm(inferred) != _norm(current)


def _fmt(v: Any) -> str:
    v = _norm(v)
    if isinstance(v, tuple):
        return str(list(v))
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _kw(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in d.items())


def _listing(keys: list[str], what: str) -> str:
    shown = ", ".join(keys[:_SHOW]) + (f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")
    return f"\n  {what} ({len(keys)}): {shown}"


def _part_of(key: str, parts: Mapping[str, str]) -> str:
    def hit(prefix: str) -> bool:
        return key.startswith(prefix) if prefix.endswith(".") else key == prefix or key.startswith(prefix + ".")

    best = max((p for p in parts if hit(p)), key=len, default=None)
    return parts[best] if best is not None else "other"


def _by_part(parts: Mapping[str, str], missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    if not parts:
        return ""
    counts: dict[str, Counter[str]] = {}
    for kind, keys in (("missing", missing), ("unexpected", unexpected), ("with a different shape", wrong)):
        for k in keys:
            counts.setdefault(_part_of(k, parts), Counter())[kind] += 1
    items = [f"{part}: " + ", ".join(f"{n} key{'s' if n != 1 else ''} {kind}" for kind, n in c.items()) for part, c in counts.items()]
    return "\n  by part: " + "; ".join(items)


def _pattern(key: str) -> str:
    """A key with its indices replaced (``layers.#.blocks.#.mlp.fc1.weight``): the family's structure."""
    return _INDEX.sub(".#", key)


_INDEX = re.compile(r"\.\d+(?=\.|$)")


def _structure_similarity(keys: Iterable[str], patterns: set[str]) -> float:
    mine = {_pattern(k) for k in keys}
    return len(mine & patterns) / len(mine | patterns) if mine and patterns else 0.0


def _meta_state_shapes(name: str, **kwargs: Any) -> dict[str, tuple[int, ...]] | None:
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation arithmetic
            m = registry.create(name, **kwargs)
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}
    except Exception:  # noqa: BLE001 - a hint must never hide the real error
        return None


@functools.lru_cache(maxsize=None)
def _family_patterns(family_name: str) -> frozenset[str]:
    """Key patterns of a family: over its zoo models (or its default build, for components)."""
    names = [e.name for e in registry.REGISTRY.values() if e.family.name == family_name and not e.is_family] or [family_name]
    out: set[str] = set()
    for name in names:
        shapes = _meta_state_shapes(name)
        if shapes:
            out.update(_pattern(k) for k in shapes)
    return frozenset(out)


@functools.lru_cache(maxsize=None)
def _zoo_shapes(name: str) -> dict[str, tuple[int, ...]] | None:
    return _meta_state_shapes(name)


def _family_label(name: str) -> str:
    return {"video_focalnet": "Video-FocalNet", "stam": "STAM", "adafocusv3": "AdaFocusV3"}.get(name, name)


def _zoo_hint(family: registry.Family, inferred: Mapping[str, Any]) -> str | None:
    """``create("<zoo name>"[, num_classes=N])`` for the zoo entry of ``family`` that agrees with
    every inferred kwarg (num_classes aside), or None."""
    for entry in (e for e in registry.REGISTRY.values() if e.family is family and not e.is_family):
        _, kwargs = registry.resolve_kwargs(entry.name, {})
        keys = [k for k in inferred if k != "num_classes" and k in kwargs]
        if keys and not any(_differs(inferred[k], kwargs[k]) for k in keys):
            extra = ""
            if "num_classes" in inferred and _differs(inferred["num_classes"], kwargs.get("num_classes")):
                extra = f", num_classes={_fmt(inferred['num_classes'])}"
            return f'videploy.models.create("{entry.name}"{extra})'
    return None


def _config_hint(model: torch.nn.Module, family: registry.Family | None, tensors: Mapping[str, torch.Tensor]) -> str:
    """Which configuration of the model's own family the checkpoint fits (family ``infer`` vs the model)."""
    if family is None or not callable(getattr(model, "official_kwargs", None)):
        return ""
    inferred = _safe_infer(family, tensors)
    try:
        current = model.official_kwargs()
    except (TypeError, ValueError, AttributeError):
        return ""
    diffs = {k: v for k, v in inferred.items() if k in current and _differs(v, current[k])}
    if not diffs:
        return ""
    if set(diffs) == {"num_classes"}:
        n = _fmt(diffs["num_classes"])
        return f"\n  the checkpoint has num_classes={n}, the model {_fmt(current['num_classes'])}: create the model with num_classes={n}."
    zoo = _zoo_hint(family, inferred)
    fix = f"it fits {zoo}" if zoo else f"create the model with {_kw(diffs)}"
    return f"\n  the checkpoint has {_kw(diffs)}; the model {_kw({k: current[k] for k in diffs})}: {fix}."


def _other_family_hint(family: registry.Family | None, tensors: Mapping[str, torch.Tensor], own: float) -> str:
    """'this looks like a STAM checkpoint' when another family's key structure fits clearly better."""
    best: tuple[float, registry.Family] | None = None
    for name in registry.families(include_components=True):
        other = registry.REGISTRY[name].family
        if other is family:
            continue
        keys = _safe_convert(other, tensors) or tensors
        score = _structure_similarity(keys, set(_family_patterns(name)))
        if best is None or score > best[0]:
            best = (score, other)
    if best is None or best[0] < 0.6 or best[0] < own + 0.2:
        return ""
    other = best[1]
    inferred = {k: v for k, v in _safe_infer(other, tensors).items() if v is not None}
    zoo = _zoo_hint(other, inferred)
    if zoo:
        where = zoo
    elif inferred:
        where = f'a {other.name!r} model with {_kw(inferred)} (videploy.models.create("{other.name}", ...))'
    else:
        where = f'a {other.name!r} model (videploy.models.create("{other.name}", ...))'
    mine = f", not a {_family_label(family.name)} one" if family is not None else ""
    return f"\n  this looks like a {_family_label(other.name)} checkpoint{mine}: load it into {where}."


def _mismatch_message(
    model: torch.nn.Module,
    family: registry.Family | None,
    label: str,
    tensors: Mapping[str, torch.Tensor],
    converted: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    wrong: list[str],
) -> str:
    what = type(model).__name__ + (f" (family {family.name})" if family else "")
    counts = [
        f"{n} key{'s' if n != 1 else ''} {kind}"
        for n, kind in ((len(missing), "missing"), (len(unexpected), "unexpected"), (len(wrong), "with a different shape"))
        if n
    ]
    msg = f"{label} does not fit {what}: {', '.join(counts)}."
    if missing:
        msg += _listing(missing, "missing")
    if unexpected:
        msg += _listing(unexpected, "unexpected")
    if wrong:
        msg += _listing([f"{k} checkpoint {list(converted[k].shape)} vs model {list(expected[k].shape)}" for k in wrong], "different shape")
    msg += _by_part(family.parts if family else {}, missing, unexpected, wrong)
    own = _structure_similarity(converted, {_pattern(k) for k in expected})
    # another family only when the key structure is clearly not the model's own (keeps this fast)
    hint = _other_family_hint(family, tensors, own) if own < 0.8 else ""
    if not hint:
        hint = _config_hint(model, family, tensors)
    if not hint and family is not None:
        # infer said nothing decisive: a zoo model whose keys and shapes fit exactly?
        shapes = {k: tuple(v.shape) for k, v in converted.items()}
        for entry in (e for e in registry.REGISTRY.values() if e.family is family and not e.is_family):
            if _zoo_shapes(entry.name) == shapes:
                hint = f'\n  it fits the zoo model {entry.name}: videploy.models.create("{entry.name}").'
                break
    return msg + hint
