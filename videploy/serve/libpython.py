"""The library path Triton's Python-backend stub needs to start in this interpreter.

PyTriton's ``triton_python_backend_stub`` is a binary linked against ``libpython3.X.so.1.0``
by soname only, so the dynamic loader resolves it on the system's library path: usually the
distribution's Python of the same minor version. The stub then imports the standard library
of *this* interpreter (it finds the virtual environment through ``PATH``). When the two are
different builds (pyenv's 3.11.7 vs Debian's 3.11.2) the stub fails while loading the model,
e.g. ``'_thread.RLock' object has no attribute '_recursion_count'``. Putting this
interpreter's own ``LIBDIR`` first on ``LD_LIBRARY_PATH`` of the server process makes the
stub load the matching library. An interpreter without a shared ``libpython`` (built without
``--enable-shared``) cannot host the stub at all, which we say before starting anything.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Callable, MutableMapping
from pathlib import Path

from videploy.errors import VideployError

ConfigVar = Callable[[str], object]

_HOW_TO_FIX = (
    "install a Python built with --enable-shared and make the virtual environment from it "
    "(pyenv: env PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.X.Y; the distribution's python3 and "
    "conda's pythons already are)"
)


def shared_libpython(config_var: ConfigVar = sysconfig.get_config_var) -> Path:
    """The running interpreter's shared ``libpython`` file (e.g. ``.../lib/libpython3.11.so.1.0``).

    Raises :class:`VideployError` when the interpreter has none.
    """
    exe = sys.executable or "this Python"
    if not config_var("Py_ENABLE_SHARED"):
        raise VideployError(
            f"{exe} was built without a shared libpython (Py_ENABLE_SHARED=0), and Triton's Python-backend stub links "
            f"libpython{config_var('VERSION')}.so to run the model in this interpreter; {_HOW_TO_FIX}"
        )
    libdir, soname = config_var("LIBDIR"), config_var("INSTSONAME") or config_var("LDLIBRARY")
    path = Path(str(libdir)) / str(soname)
    if not libdir or not soname or not path.is_file():
        raise VideployError(
            f"{exe} says it has a shared libpython but {path} does not exist (LIBDIR={libdir!r}, INSTSONAME={soname!r}); "
            f"the installation is incomplete; {_HOW_TO_FIX}"
        )
    return path


def prepend_libpython_dir(environ: MutableMapping[str, str], config_var: ConfigVar = sysconfig.get_config_var) -> str:
    """Put the interpreter's ``LIBDIR`` first on ``environ['LD_LIBRARY_PATH']``; returns the new value.

    Idempotent: an entry already first is not added twice (repeated server starts in one process).
    """
    libdir = str(shared_libpython(config_var).parent)
    current = [p for p in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if not current or current[0] != libdir:
        current.insert(0, libdir)
    environ["LD_LIBRARY_PATH"] = os.pathsep.join(current)
    return environ["LD_LIBRARY_PATH"]
