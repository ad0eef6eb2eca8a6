"""Write a bundle directory atomically: the destination always holds the old bundle or the new one.

Export writes into a hidden sibling ``.NAME.partial-XXXX`` and swaps it into place only after
the manifest is written and verification passed. The swap survives a crash at any instant:

1. every file of the stage is fsynced, then the stage is renamed ``.NAME.new-XXXX`` -- the name
   itself says "complete";
2. an existing bundle is renamed aside to ``.NAME.old-XXXX``;
3. ``.NAME.new-XXXX`` is renamed to ``NAME``; then the old one is deleted.

The only instant with no ``NAME`` is between 2 and 3, and then a complete ``.new-`` sibling
exists: :func:`repair_interrupted_swap` (run by every export to the same place and whenever a
bundle is opened) renames it into place. Each writer holds an ``flock`` on its stage directory (the
lock follows the directory through the renames), so the next export deletes exactly the leftovers
of dead writers (``.partial-``/``.new-`` nobody holds, ``.old-`` once ``NAME`` exists), never a
concurrent writer's stage.

OS failures (read-only file system, no space, permissions, a path under a regular file) become
:class:`VideployError` naming the path; the destination is unchanged. Directories are created with
``0o777`` minus the umask, like ``mkdir`` does, so a server running as another user can read a
bundle when the umask allows it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

from videploy.errors import VideployError

try:  # POSIX; elsewhere leftovers of other writers are kept (never deleted while maybe in use)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MANIFEST = "manifest.json"  # not imported from manifest.py: that module imports this one lazily
TAGS = ("partial", "new", "old")

# Test hook: called with the name of each step of the swap (crash-safety tests stop the process there).
_step_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)


def _os_error(action: str, exc: OSError, target: Path) -> VideployError:
    where = f" ({exc.filename})" if exc.filename else ""
    return VideployError(
        f"cannot {action} bundle {str(target)!r}: {exc.strerror or exc}{where}; the destination is unchanged. "
        "Check that the output directory is writable and has free space, or choose another -o directory"
    )


def _siblings(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}.{tag}-"
    try:
        return [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return []


def _is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on directory ``path``, or None if another process holds it."""
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _newest_first(paths: list[Path]) -> list[Path]:
    def mtime(p: Path) -> float:
        try:
            return (p / MANIFEST).stat().st_mtime
        except OSError:
            return 0.0

    return sorted(paths, key=mtime, reverse=True)


def repair_interrupted_swap(target: str | Path) -> bool:
    """If ``target`` is missing but an interrupted swap left a complete bundle beside it, move it back.

    A complete new bundle (``.NAME.new-*``) wins over the old one (``.NAME.old-*``): the export
    that was interrupted had finished. Returns True if ``target`` was restored. Cheap when
    ``target`` exists (nothing is listed). Raises :class:`VideployError` if a restore is needed
    but not permitted (e.g. a read-only directory), saying what to move by hand.
    """
    target = Path(target)
    if os.path.lexists(target):
        return False
    candidates = [p for p in _newest_first(_siblings(target, "new")) if _is_bundle(p)]
    candidates += [p for p in _newest_first(_siblings(target, "old")) if _is_bundle(p)]
    for c in candidates:
        try:
            os.rename(c, target)
        except FileNotFoundError:
            continue  # another process restored (or cleaned) it first
        except OSError as exc:
            if _is_bundle(target):
                return True  # a concurrent repair won the race
            raise VideployError(
                f"bundle {str(target)!r} is missing because an export was interrupted while replacing it, and restoring it "
                f"from {str(c)!r} failed ({exc.strerror or exc}); move that directory to {str(target)!r} by hand"
            ) from exc
        with contextlib.suppress(OSError):
            _fsync_dir(target.parent)
        return True
    return False


def clean_leftovers(target: str | Path) -> list[Path]:
    """Delete what killed writers left beside ``target``; returns the paths removed.

    ``.partial-``/``.new-`` directories are removed only when no live writer holds their lock;
    ``.old-`` ones only once ``target`` exists (else they may be the bundle to restore).
    """
    target = Path(target)
    removed = []
    for tag in ("partial", "new"):
        for p in _siblings(target, tag):
            fd = _try_lock(p)
            if fd is None:
                continue
            try:
                _remove(p)
                removed.append(p)
            finally:
                os.close(fd)
    if _is_bundle(target):
        for p in _siblings(target, "old"):
            _remove(p)
            removed.append(p)
    return removed


def _remove(path: Path) -> None:
    # the manifest goes first, so a half-deleted directory is never taken for a bundle by a repair
    with contextlib.suppress(OSError):
        (path / MANIFEST).unlink()
    shutil.rmtree(path, ignore_errors=True)


def prepare_output(target: str | Path, overwrite: bool = False) -> None:
    """Check that an export may write ``target`` (cheap; run it before minutes of export work).

    Repairs an interrupted swap, refuses an existing target without ``overwrite`` and a
    non-bundle one always, creates the parent directories, and probes that a sibling directory
    can be created there. Every failure is a :class:`VideployError` naming the path.
    """
    target = Path(target)
    repair_interrupted_swap(target)
    if os.path.lexists(target):
        if not overwrite:
            raise VideployError(f"output {str(target)!r} already exists; choose another -o directory or pass --overwrite")
        if not _is_bundle(target):
            raise VideployError(f"refusing to overwrite {str(target)!r}: it is not a videploy bundle")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise VideployError(
            f"cannot create bundle {str(target)!r}: a part of its path is a regular file, not a directory ({exc.filename or target.parent}); "
            "choose another -o directory"
        ) from exc
    except OSError as exc:
        raise _os_error("create", exc, target) from exc
    probe = _make_stage(target)
    os.rmdir(probe)


def _make_stage(target: Path) -> Path:
    for _ in range(100):
        stage = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
        try:
            os.mkdir(stage, 0o777)  # minus the umask, as mkdir(1) does (mkdtemp would force 0700)
            return stage
        except FileExistsError:
            continue
        except NotADirectoryError as exc:
            raise VideployError(
                f"cannot create bundle {str(target)!r}: a part of its path is a regular file, not a directory; choose another -o directory"
            ) from exc
        except OSError as exc:
            raise _os_error("create", exc, target) from exc
    raise VideployError(f"cannot create a staging directory beside {str(target)!r}")  # pragma: no cover


@contextlib.contextmanager
def staged_bundle(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging directory; on success it replaces ``target`` (see the module docstring).

    ``target`` must not exist unless ``overwrite``; an existing non-bundle directory is never
    replaced. An exception in the body removes the stage and leaves ``target`` as it was; an
    ``OSError`` in the body becomes a :class:`VideployError` naming the path.
    """
    target = Path(target)
    prepare_output(target, overwrite)
    clean_leftovers(target)
    stage = _make_stage(target)
    lock = _try_lock(stage)
    try:
        _step("stage-created")
        try:
            yield stage
        except OSError as exc:
            raise _os_error("write", exc, target) from exc
        try:
            _swap_in(stage, target)
        except OSError as exc:
            raise _os_error("write", exc, target) from exc
    except BaseException:
        if stage.exists():
            _remove(stage)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _swap_in(stage: Path, target: Path) -> None:
    _step("fsync-stage")
    _fsync_tree(stage)
    new = target.parent / f".{target.name}.new-{stage.name.rsplit('-', 1)[-1]}"
    _step("rename-stage-to-new")
    os.rename(stage, new)
    _step("fsync-parent-new")
    _fsync_dir(target.parent)
    old = None
    try:
        if os.path.lexists(target):
            if not _is_bundle(target):  # appeared since prepare_output: never replace a non-bundle
                raise VideployError(f"refusing to overwrite {str(target)!r}: it is not a videploy bundle")
            old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
            _step("rename-target-to-old")
            os.rename(target, old)
            _step("fsync-parent-old")
            _fsync_dir(target.parent)
        _step("rename-new-to-target")
        try:
            os.rename(new, target)
        except FileNotFoundError:
            if not _is_bundle(target):  # else a concurrent repair already moved it into place
                raise
        _step("fsync-parent-target")
        _fsync_dir(target.parent)
    except BaseException:
        # put things back as they were: the old bundle (if moved) at target, the new one gone
        if old is not None and not os.path.lexists(target) and old.exists():
            with contextlib.suppress(OSError):
                os.rename(old, target)
        if new.exists() and os.path.lexists(target):
            _remove(new)
        raise
    if old is not None:
        _step("remove-old")
        _remove(old)
    _step("done")


@contextlib.contextmanager
def updating_bundle(bundle: str | Path) -> Iterator[Path]:
    """Yield a copy of an existing bundle to modify (e.g. add engines); it replaces the original on success."""
    bundle = Path(bundle)
    with staged_bundle(bundle, overwrite=True) as stage:
        shutil.copytree(bundle, stage, dirs_exist_ok=True)
        yield stage
