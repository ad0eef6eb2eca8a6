"""What a checkpoint's pickle may name: data constructors, inert stand-ins, or nothing that runs code.

torch's weights-only unpickler refuses every global outside its allowlist. Official training scripts
also pickle configuration objects (a yacs ``CfgNode``, a numpy ``best_acc1``), so the names a file
references (read by :mod:`.pickle_scan`, nothing unpickled) are turned into allowlist entries here:
names that run code are refused at once, numpy values / paths / dates map to their data
constructors, and every other class becomes an inert stand-in that is never imported.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import pathlib
from collections import OrderedDict
from typing import Any, Iterable

import numpy as np

from videploy.errors import VideployError

UNREADABLE_GLOBAL = "<unreadable global>"  # a STACK_GLOBAL whose name the scan could not follow


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
    # numpy 2 moved numpy.core to numpy._core; numpy 1.26 has a numpy._core shim whose submodules load
    # only when imported by name, so import the module itself rather than reading attributes
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:
        multiarray = importlib.import_module("numpy.core.multiarray")
    allowed: dict[str, Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{mod}._reconstruct"] = multiarray._reconstruct
        allowed[f"{mod}.scalar"] = multiarray.scalar
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


def _torch_allowed() -> set[str]:
    from torch import _weights_only_unpickler as wou

    return set(wou._get_allowed_globals())


def refuse_code(names: Iterable[str], source: str) -> None:
    """Raise :class:`CodeInCheckpoint` (dangerous) for the first name that runs code; data and classes pass."""
    safe = _torch_allowed()
    for qualified in sorted(names):
        if qualified in safe or qualified in _data_globals():
            continue
        if qualified == UNREADABLE_GLOBAL or _refers_to_code(qualified):
            module, _, name = qualified.rpartition(".")
            shown = f"os.{name}" if module in ("posix", "nt") else qualified  # os.system pickles as posix.system
            raise CodeInCheckpoint(shown, dangerous=True, source=source)


def allowlist_for(names: Iterable[str], source: str) -> list[Any]:
    """``torch.serialization.safe_globals`` entries for ``names``: data constructors or inert stand-ins.

    Raises :class:`CodeInCheckpoint` if a name runs code (see :func:`refuse_code`).
    """
    names = set(names)
    refuse_code(names, source)
    entries: list[Any] = list(_numpy_dtype_classes())
    for qualified in sorted(names - _torch_allowed()):
        real = _data_globals().get(qualified)
        entries.append((real if real is not None else _stand_in(qualified), qualified))
    return entries
