"""The server's library path puts this interpreter's own libpython first."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from videploy.errors import VideployError
from videploy.serve.libpython import prepend_libpython_dir, shared_libpython


def fake_config(libdir: Path, shared: int = 1, soname: str = "libpython3.11.so.1.0"):
    values = {"Py_ENABLE_SHARED": shared, "LIBDIR": str(libdir), "INSTSONAME": soname, "LDLIBRARY": "libpython3.11.so", "VERSION": "3.11"}
    return values.get


def test_libdir_goes_first_once(tmp_path):
    (tmp_path / "libpython3.11.so.1.0").write_bytes(b"")
    env = {"LD_LIBRARY_PATH": "/opt/a:/opt/b"}
    assert prepend_libpython_dir(env, fake_config(tmp_path)) == f"{tmp_path}:/opt/a:/opt/b"
    assert prepend_libpython_dir(env, fake_config(tmp_path)) == f"{tmp_path}:/opt/a:/opt/b"  # not twice
    empty: dict[str, str] = {}
    assert prepend_libpython_dir(empty, fake_config(tmp_path)) == str(tmp_path)


def test_static_python_is_refused_with_a_fix(tmp_path):
    with pytest.raises(VideployError, match=r"without a shared libpython \(Py_ENABLE_SHARED=0\).*--enable-shared"):
        shared_libpython(fake_config(tmp_path, shared=0))
    with pytest.raises(VideployError, match="does not exist"):
        shared_libpython(fake_config(tmp_path))  # says shared, but the file is missing


@pytest.mark.skipif(not sysconfig.get_config_var("Py_ENABLE_SHARED"), reason="this interpreter has no shared libpython")
def test_this_interpreter():
    lib = shared_libpython()
    assert lib.is_file() and lib.parent == Path(sysconfig.get_config_var("LIBDIR"))
