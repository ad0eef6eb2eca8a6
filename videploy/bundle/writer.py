"""Write a bundle directory atomically: all of it appears, or none of it does.

Export writes into a hidden sibling directory and renames it into place only after the
manifest is written and verification passed. An exception (or Ctrl-C) removes the staging
directory, so a failed export never leaves a half bundle behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from videploy.errors import VideployError


@contextlib.contextmanager
def staged_bundle(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging directory; on success it replaces ``target``.

    ``target`` must not exist unless ``overwrite``; an existing non-bundle directory is never replaced.
    """
    target = Path(target)
    if target.exists():
        if not overwrite:
            raise VideployError(f"output {str(target)!r} already exists; choose another -o directory or pass --overwrite")
        if not target.is_dir() or not (target / "manifest.json").is_file():
            raise VideployError(f"refusing to overwrite {str(target)!r}: it is not a videploy bundle")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    # Swap in: move an old bundle aside first so a crash in between leaves either old or new.
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "b")
    try:
        os.replace(stage, target)
    except BaseException:
        if old is not None:
            os.replace(old / "b", target)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def updating_bundle(bundle: str | Path) -> Iterator[Path]:
    """Yield a copy of an existing bundle to modify (e.g. add engines); it replaces the original on success."""
    bundle = Path(bundle)
    with staged_bundle(bundle, overwrite=True) as stage:
        shutil.copytree(bundle, stage, dirs_exist_ok=True)
        yield stage
