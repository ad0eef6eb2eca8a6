"""The bundle writer: OS failures as one error, crash safety at every step of the swap, leftovers, umask.

The crash tests run the writer in a subprocess that stops itself with ``os._exit`` right before a
chosen step (rename or fsync) -- no cleanup handlers run, as with ``kill -9`` -- and then check that
the destination holds a usable bundle (the manifest validates, its graph loads in onnxruntime).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.runtime.toys import ToyStatic, static_bundle
from videploy.bundle import writer
from videploy.bundle.manifest import MANIFEST_NAME, read_manifest
from videploy.bundle.writer import clean_leftovers, repair_interrupted_swap, staged_bundle
from videploy.errors import VideployError

REPO = Path(__file__).resolve().parents[2]
STEPS = (
    "stage-created",
    "fsync-stage",
    "rename-stage-to-new",
    "fsync-parent-new",
    "rename-target-to-old",
    "fsync-parent-old",
    "rename-new-to-target",
    "fsync-parent-target",
    "remove-old",
    "done",
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A tiny valid bundle (one 16x16 ONNX graph) to copy as 'old' and 'new' content."""
    return static_bundle(tmp_path_factory.mktemp("toy") / "toy", ToyStatic().eval())


def _make(src: Path, dst: Path, name: str) -> Path:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    d = json.loads((dst / MANIFEST_NAME).read_text())
    d["model_name"] = name
    (dst / MANIFEST_NAME).write_text(json.dumps(d))
    return dst


def _usable(target: Path) -> str:
    """The model name of the valid bundle at ``target`` (manifest, files, graphs and an onnxruntime load)."""
    import onnxruntime as ort

    m = read_manifest(target, check_graphs=True)
    ort.InferenceSession(str(target / m.graphs[0].file), providers=["CPUExecutionProvider"])
    return m.model_name


def _siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# --- item 5: OS failures are one clear error with the path -----------------------------------------
def test_read_only_output(tmp_path, monkeypatch):
    def ro(path, mode=0o777):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(writer.os, "mkdir", ro)
    with pytest.raises(VideployError) as err:
        with staged_bundle(tmp_path / "out"):
            pass
    assert "Read-only file system" in str(err.value) and str(tmp_path / "out") in str(err.value)


def test_output_under_a_regular_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for target in (tmp_path / "file.txt" / "b", tmp_path / "file.txt" / "sub" / "b"):
        with pytest.raises(VideployError, match="regular file") as err:
            with staged_bundle(target):
                pass
        assert str(target) in str(err.value)


def test_output_under_a_regular_file_cli(tmp_path, capsys):
    from videploy.cli import main

    (tmp_path / "file.txt").write_text("x")
    code = main(["export", "video_focalnet_tiny", "-o", str(tmp_path / "file.txt" / "b")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "regular file" in err


def test_no_space_while_writing(tmp_path, toy):
    target = _make(toy, tmp_path / "b", "old")
    with pytest.raises(VideployError) as err:
        with staged_bundle(target, overwrite=True) as stage:
            raise OSError(errno.ENOSPC, "No space left on device", str(stage / "main.onnx"))
    msg = str(err.value)
    assert "No space left on device" in msg and "main.onnx" in msg and str(target) in msg and "unchanged" in msg
    assert _usable(target) == "old" and _siblings(tmp_path) == ["b"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_real_full_device_while_saving_onnx(tmp_path, toy):
    """onnx.save_model onto a device that answers ENOSPC (/dev/full): the error is the writer's one line."""
    import onnx

    target = _make(toy, tmp_path / "b", "old")
    proto = onnx.load(str(toy / "main.onnx"))
    with pytest.raises(VideployError, match="No space left on device") as err:
        with staged_bundle(target, overwrite=True) as stage:
            (stage / "main.onnx").symlink_to("/dev/full")
            onnx.save_model(proto, str(stage / "main.onnx"))
    assert str(target) in str(err.value)
    assert _usable(target) == "old" and _siblings(tmp_path) == ["b"]


def test_permission_denied_during_the_swap_keeps_the_old_bundle(tmp_path, toy, monkeypatch):
    target = _make(toy, tmp_path / "b", "old")
    real = os.rename
    failed = []

    def rename(src, dst):
        if Path(dst) == target and ".new-" in str(src) and not failed:  # the swap-in fails once; the rollback works
            failed.append(src)
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(writer.os, "rename", rename)
    with pytest.raises(VideployError, match="Permission denied"):
        with staged_bundle(target, overwrite=True) as stage:
            _make(toy, stage, "new")
    monkeypatch.undo()
    assert _usable(target) == "old" and _siblings(tmp_path) == ["b"]


# --- umask (the GPU-user issue: a server running as another user must be able to read bundles) ---
@pytest.mark.parametrize("umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)])
def test_bundle_respects_the_umask(tmp_path, toy, umask, dir_mode, file_mode):
    old = os.umask(umask)
    try:
        with staged_bundle(tmp_path / "b") as stage:
            (stage / "main.onnx").write_bytes((toy / "main.onnx").read_bytes())
            (stage / MANIFEST_NAME).write_text((toy / MANIFEST_NAME).read_text())
    finally:
        os.umask(old)
    assert (tmp_path / "b").stat().st_mode & 0o777 == dir_mode
    assert (tmp_path / "b" / MANIFEST_NAME).stat().st_mode & 0o777 == file_mode


# --- item 6: repair and leftovers ------------------------------------------------------------------
def test_missing_bundle_is_restored_from_a_complete_new_one(tmp_path, toy):
    target = tmp_path / "b"
    _make(toy, tmp_path / ".b.old-1111", "old")
    _make(toy, tmp_path / ".b.new-2222", "new")
    assert _usable(target) == "new"  # read_manifest repairs
    assert (tmp_path / ".b.old-1111").exists()  # deleted by the next export, not by a reader
    with staged_bundle(target, overwrite=True) as stage:
        _make(toy, stage, "newer")
    assert _usable(target) == "newer" and _siblings(tmp_path) == ["b"]


def test_missing_bundle_is_restored_from_the_old_one(tmp_path, toy):
    target = tmp_path / "b"
    _make(toy, tmp_path / ".b.old-1111", "old")
    (tmp_path / ".b.partial-3333").mkdir()  # an unfinished stage is never restored
    assert repair_interrupted_swap(target) is True
    assert _usable(target) == "old"
    assert repair_interrupted_swap(target) is False


def test_leftovers_of_killed_exports_are_cleaned_by_the_next_one(tmp_path, toy):
    target = _make(toy, tmp_path / "b", "old")
    for name in (".b.partial-dead1", ".b.partial-dead2", ".b.new-dead3", ".b.old-dead4"):
        _make(toy, tmp_path / name, name)
    (tmp_path / ".other.partial-keep").mkdir()  # another target's: not ours to delete
    live = tmp_path / ".b.partial-live"
    live.mkdir()
    fd = writer._try_lock(live)  # a concurrent writer holds its stage
    try:
        with staged_bundle(target, overwrite=True) as stage:
            _make(toy, stage, "new")
        assert _usable(target) == "new"
        assert _siblings(tmp_path) == [".b.partial-live", ".other.partial-keep", "b"]
    finally:
        os.close(fd)
    assert clean_leftovers(target) == [live]


# --- item 6: crash at every step of export --overwrite --------------------------------------------
CRASH_SCRIPT = textwrap.dedent(
    """
    import json, os, shutil, sys
    from pathlib import Path
    from videploy.bundle import writer

    target, src, stop_at = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def hook(step):
        if step == stop_at:
            os._exit(77)  # like kill -9: no finally, no atexit

    writer._step_hook = hook
    with writer.staged_bundle(target, overwrite=True) as stage:
        shutil.copytree(src, stage, dirs_exist_ok=True)
        d = json.loads((stage / "manifest.json").read_text())
        d["model_name"] = "new"
        (stage / "manifest.json").write_text(json.dumps(d))
    print("finished")
    """
)


def _run_crashing(target: Path, src: Path, step: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(target), str(src), step], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("existing", [True, False], ids=["overwrite", "fresh"])
@pytest.mark.parametrize("step", STEPS)
def test_crash_at_every_step_leaves_a_usable_bundle(tmp_path, toy, step, existing):
    target = tmp_path / "b"
    if existing:
        _make(toy, target, "old")
    proc = _run_crashing(target, toy, step)
    swaps_old = step in ("rename-target-to-old", "fsync-parent-old", "remove-old")
    if existing or not swaps_old:
        assert proc.returncode == 77, proc.stderr
    else:  # nothing to move aside: those steps do not happen
        assert proc.returncode == 0 and "finished" in proc.stdout, proc.stderr
    complete_new = any(p.name.startswith(".b.new-") for p in tmp_path.iterdir())
    if existing or os.path.lexists(target) or complete_new:
        name = _usable(target)  # read_manifest repairs a missing target first
        assert name in (("old", "new") if existing else ("new",))
        if existing and STEPS.index(step) >= STEPS.index("fsync-parent-old"):
            assert name == "new"  # once the old bundle was moved aside, the complete new one wins
    else:  # a fresh export that died before its bundle was complete: nothing appears
        with pytest.raises(VideployError, match="does not exist"):
            read_manifest(target)
    # the next export to the same place succeeds and leaves nothing else behind
    with staged_bundle(target, overwrite=True) as stage:
        _make(toy, stage, "next")
    assert _usable(target) == "next" and _siblings(tmp_path) == ["b"]


def test_full_export_killed_between_the_renames(tmp_path, toy):
    """One real export (tiny model) stopped with the old bundle moved aside and the new one not yet in place."""
    script = textwrap.dedent(
        """
        import os, sys
        from videploy.bundle import writer
        from videploy.export.api import export_bundle
        from tests.export.tiny_models import TinyClipNet

        out, stop_at = sys.argv[1], sys.argv[2]
        writer._step_hook = lambda step: os._exit(77) if step == stop_at else None
        export_bundle(TinyClipNet(), out, name="tiny_clip_v2", overwrite=True)
        """
    )
    target = _make(toy, tmp_path / "b", "old")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script, str(target), "rename-new-to-target"], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 77, proc.stderr[-2000:]
    assert not target.exists()  # the crash window: neither name holds a bundle...
    from videploy import runtime

    rec = runtime.load(target, threads=1)  # ...until the next open restores the complete new one
    assert rec.manifest.model_name == "tiny_clip_v2"
    rec.close()
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == [".b.old", "b"]
