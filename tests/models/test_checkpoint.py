"""load_checkpoint: safe reading, unwrapping, strict loading and the mismatch explanations.

Real pickles throughout: files are written with torch.save (zip and, where it matters, the
legacy non-zip format) and read back through the public API.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

import videploy.models as vm
from videploy.errors import VideployError
from videploy.models.checkpoint import CodeInCheckpoint, LoadReport, file_sha256, load_checkpoint, read_checkpoint, unresolved_class

TINY_VFN = dict(img_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_classes=5)
TINY_STAM = dict(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=5, aggregate={"clip_length": 4, "embed_dim": 32, "n_layers": 1})
FORMATS = pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])


def tiny_vfn(seed: int = 0, **overrides: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    return vm.create("video_focalnet", **{**TINY_VFN, **overrides})


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


def optimizer_state(model: torch.nn.Module, **buffers: float) -> dict[str, Any]:
    """What ``optimizer.state_dict()`` looks like in a training checkpoint (building a real torch
    optimizer imports torch._dynamo: seconds, for the same pickle)."""
    params = list(model.parameters())
    state = {i: {name: torch.full_like(p, v) for name, v in buffers.items()} | {"step": torch.tensor(3.0)} for i, p in enumerate(params)}
    return {"state": state, "param_groups": [{"lr": 0.1, "weight_decay": 0.05, "params": list(range(len(params)))}]}


def save(obj: Any, path: Path, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@contextlib.contextmanager
def fake_module(name: str, **attrs: Any) -> Iterator[types.ModuleType]:
    """A module importable only inside the block, so pickles can name classes nothing can import later."""
    parts = name.split(".")
    created = []
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        if sub not in sys.modules:
            sys.modules[sub] = types.ModuleType(sub)
            created.append(sub)
    mod = sys.modules[name]
    for k, v in attrs.items():
        v.__module__ = name
        v.__qualname__ = k
        setattr(mod, k, v)
    try:
        yield mod
    finally:
        for sub in created:
            del sys.modules[sub]


# --------------------------------------------------------------------------------------------
# Plain loading, formats, containers, prefixes
# --------------------------------------------------------------------------------------------


@FORMATS
def test_state_dict_file_round_trip(tmp_path, legacy):
    src, dst = tiny_vfn(0), tiny_vfn(1)
    path = save(src.state_dict(), tmp_path / "w.pth", legacy)
    report = load_checkpoint(dst, path)
    assert_same_weights(src, dst)
    assert isinstance(report, LoadReport)
    assert report.source == str(path)
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert report.num_tensors == len(src.state_dict())
    assert report.family == "video_focalnet"
    assert report.unwrapped == () and report.dropped_keys == () and report.other_entries == ()


def test_in_memory_state_dict_has_no_hash():
    src, dst = tiny_vfn(0), tiny_vfn(1)
    report = load_checkpoint(dst, src.state_dict())
    assert report.sha256 is None and report.source == "<state dict>"
    assert_same_weights(src, dst)


def test_numpy_state_dict_loads_and_casts_like_load_state_dict():
    # MobileNetV2 has BatchNorm: num_batches_tracked is int64 in the model, float32 in the arrays
    torch.manual_seed(0)
    src = vm.create("mobilenet_v2", n_class=3, input_size=32)
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.num_batches_tracked.fill_(7)
    arrays = {k: v.numpy().astype(np.float32) for k, v in src.state_dict().items()}
    arrays = {k: (np.asarray(v) if v.ndim else np.float32(v)) for k, v in arrays.items()}  # 0-d as numpy scalars
    torch.manual_seed(1)
    dst = vm.create("mobilenet_v2", n_class=3, input_size=32)
    report = load_checkpoint(dst, arrays)
    assert report.num_tensors == len(arrays)
    assert_same_weights(src, dst)  # includes dtype: the int64 buffers stayed int64
    nbt = [k for k in dst.state_dict() if k.endswith("num_batches_tracked")]
    assert nbt and all(dst.state_dict()[k].dtype == torch.int64 and int(dst.state_dict()[k]) == 7 for k in nbt)


def test_npz_file(tmp_path):
    src, dst = tiny_vfn(0), tiny_vfn(1)
    path = tmp_path / "w.npz"
    np.savez(path, **{k: v.numpy() for k, v in src.state_dict().items()})
    load_checkpoint(dst, path)
    assert_same_weights(src, dst)


def test_damaged_npz_file(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, w=np.zeros((64, 64), np.float32))
    with zipfile.ZipFile(path) as z:
        blob = z.read("w.npy")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", blob[: len(blob) // 2])  # a header that promises more than the data holds
    with pytest.raises(VideployError, match="w.npz is a damaged .npz archive"):
        load_checkpoint(tiny_vfn(), path)


@pytest.mark.parametrize(
    "wrap, unwrapped",
    [
        (lambda sd: {"model": sd, "epoch": 3}, ("['model']",)),
        (lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}}, ("['state_dict']", "prefix 'module.'")),
        (lambda sd: {"model": {"_orig_mod." + k: v for k, v in sd.items()}}, ("['model']", "prefix '_orig_mod.'")),
        (lambda sd: {"model_state": {"module._orig_mod." + k: v for k, v in sd.items()}}, ("['model_state']", "prefix 'module.'", "prefix '_orig_mod.'")),
        (lambda sd: {"module": {"state_dict": sd}}, ("['module']", "['state_dict']")),
        (lambda sd: {"ema_weights": sd, "step": 10}, ("['ema_weights']",)),  # the one entry that is a state dict
        (lambda sd: {k.replace("layers.", "layers._orig_mod.", 1): v for k, v in sd.items()}, ("'._orig_mod.' segments",)),
        (lambda sd: {"model": {"arch": "focalnet"}, "state_dict": sd}, ("['state_dict']",)),  # 'model' holds no weights here
    ],
    ids=["model", "ddp", "compile", "ddp+compile", "nested", "only-state-dict", "compiled-submodule", "model-is-metadata"],
)
def test_containers_and_prefixes(tmp_path, wrap, unwrapped):
    src, dst = tiny_vfn(0), tiny_vfn(1)
    report = load_checkpoint(dst, save(wrap(src.state_dict()), tmp_path / "c.pth"))
    assert report.unwrapped == unwrapped
    assert_same_weights(src, dst)


@FORMATS
def test_adafocus_style_training_checkpoint(tmp_path, legacy):
    """The official AdaFocus save: {epoch, state_dict (DDP keys), optimizer, best_acc1}; best_acc1 may be a numpy
    float (mAP from numpy), which torch's weights_only allowlist refuses: the restricted reader handles it."""
    src, dst = tiny_vfn(0), tiny_vfn(1)
    ckpt = {"epoch": 12, "state_dict": {"module." + k: v for k, v in src.state_dict().items()}, "optimizer": optimizer_state(src, momentum_buffer=0.5), "best_acc1": np.float64(81.5)}
    path = save(ckpt, tmp_path / "ada.pth.tar", legacy)
    with pytest.raises(Exception):  # precondition: torch's own safe loader refuses this file
        torch.load(path, weights_only=True)
    report = load_checkpoint(dst, path)
    assert report.unwrapped == ("['state_dict']", "prefix 'module.'")
    assert set(report.other_entries) == {"epoch", "optimizer", "best_acc1"}
    assert_same_weights(src, dst)
    raw = read_checkpoint(path)
    assert raw["best_acc1"] == 81.5 and raw["epoch"] == 12


@FORMATS
def test_video_focalnet_training_checkpoint_with_yacs_config(tmp_path, legacy):
    """Video-FocalNet's save_checkpoint pickles its yacs CfgNode (a dict subclass) as 'config'. The class
    is not importable when loading (here: never again); the file must still load, without running it."""

    class CfgNode(dict):
        def __init__(self, init: dict | None = None) -> None:
            super().__init__(init or {})
            self.__dict__["__immutable__"] = False

        def __setstate__(self, state: Any) -> None:  # pragma: no cover - must never be called
            raise AssertionError("the real class was used")

    src, dst = tiny_vfn(0), tiny_vfn(1)
    with fake_module("fake_yacs_for_test.config", CfgNode=CfgNode):
        cfg = CfgNode({"MODEL": CfgNode({"NUM_CLASSES": 5, "TYPE": "focalnet"}), "DATA": CfgNode({"NUM_FRAMES": 8}), "AMP_OPT_LEVEL": "O0"})
        ckpt = {"model": src.state_dict(), "optimizer": optimizer_state(src, exp_avg=0.1, exp_avg_sq=0.01), "lr_scheduler": {"last_epoch": 3}, "max_accuracy": 79.8, "epoch": 3, "config": cfg}
        path = save(ckpt, tmp_path / "ckpt_epoch_3.pth", legacy)
    assert "fake_yacs_for_test" not in sys.modules
    report = load_checkpoint(dst, path)
    assert_same_weights(src, dst)
    assert report.unwrapped == ("['model']",) and "config" in report.other_entries
    config = read_checkpoint(path)["config"]
    assert not isinstance(config, CfgNode)
    assert unresolved_class(config) == "fake_yacs_for_test.config.CfgNode"
    assert config["MODEL"]["NUM_CLASSES"] == 5 and config["DATA"]["NUM_FRAMES"] == 8
    assert vars(config)["__immutable__"] is False


def test_whole_pickled_module(tmp_path):
    """torch.save(model) pickles the classes; their parameters are read from the stand-ins."""
    src, dst = tiny_vfn(0), tiny_vfn(1)
    report = load_checkpoint(dst, save(src, tmp_path / "whole.pth"))
    assert report.unwrapped[0].startswith("module object")
    assert_same_weights(src, dst)


def test_non_strict_reports_what_did_not_load():
    src, dst = tiny_vfn(0), tiny_vfn(1, num_classes=7)
    report = load_checkpoint(dst, src.state_dict(), strict=False)
    assert set(report.mismatched_keys) == {"head.weight", "head.bias"}
    assert report.num_tensors == len(src.state_dict()) - 2
    assert torch.equal(dst.state_dict()["patch_embed.proj.weight"], src.state_dict()["patch_embed.proj.weight"])


def test_convert_drops_are_reported():
    """AdaFocusV3's convert drops the training-only heads by name; built on the meta device (shapes only)."""
    with torch.device("meta"):
        model = vm.create("adafocusv3_mbv2_r50")
        sd = dict(model.state_dict())
        sd["global_CNN_fc.1.weight"] = torch.empty(200, 1280)
        sd["global_CNN_fc.1.bias"] = torch.empty(200)
    report = load_checkpoint(model, sd)
    assert set(report.dropped_keys) == {"global_CNN_fc.1.weight", "global_CNN_fc.1.bias"}
    assert report.num_tensors == len(model.state_dict())


# --------------------------------------------------------------------------------------------
# Files that must not load, and never run code
# --------------------------------------------------------------------------------------------


class _RunsCommand:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"echo pwned > {self.target}",))


@FORMATS
def test_malicious_pickle_is_refused_and_not_run(tmp_path, legacy):
    target = tmp_path / "pwned"
    path = save({"model": tiny_vfn().state_dict(), "payload": _RunsCommand(target)}, tmp_path / "evil.pth", legacy)
    with pytest.raises(CodeInCheckpoint) as info:
        load_checkpoint(tiny_vfn(), path)
    assert not target.exists()
    msg = str(info.value)
    assert "os.system" in msg and "tries to run code" in msg and "never executes code from checkpoints" in msg
    assert str(path) in msg
    assert isinstance(info.value, VideployError)


def _write_file(path: str) -> None:  # pragma: no cover - must never run
    Path(path).write_text("ran")


@FORMATS
def test_unknown_callable_is_refused_not_called(tmp_path, legacy):
    """A __reduce__ to a function videploy does not know (here: one that writes a file) is refused by name."""
    target = tmp_path / "written"

    class CallsHelper:
        def __reduce__(self) -> tuple[Any, ...]:
            return (_write_file, (str(target),))

    with fake_module("fake_helpers_for_test", write_file=_write_file):
        path = save({"model": tiny_vfn().state_dict(), "x": CallsHelper()}, tmp_path / "calls.pth", legacy)
    _write_file.__module__, _write_file.__qualname__ = __name__, "_write_file"
    with pytest.raises(CodeInCheckpoint, match="fake_helpers_for_test.write_file") as info:
        read_checkpoint(path)
    assert not target.exists()
    assert not info.value.dangerous


@pytest.mark.parametrize(
    "payload, name",
    [
        ((eval, ("1+1",)), "builtins.eval"),
        ((getattr, (Path, "cwd")), "builtins.getattr"),
        ((__import__("subprocess").call, (["true"],)), "subprocess.call"),
    ],
    ids=["eval", "getattr", "subprocess"],
)
def test_code_running_builtins_are_refused(tmp_path, payload, name):
    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return payload

    path = save({"x": Payload()}, tmp_path / "p.pth")
    with pytest.raises(CodeInCheckpoint, match=name.replace(".", r"\.")):
        read_checkpoint(path)


def test_forced_weights_only_environment_changes_nothing(tmp_path, monkeypatch):
    """videploy only ever calls torch.load(weights_only=True), so forcing it in the environment is harmless."""
    src, dst = tiny_vfn(0), tiny_vfn(1)
    path = save({"model": src.state_dict(), "best_acc1": np.float64(1.0)}, tmp_path / "c.pth")
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    load_checkpoint(dst, path)
    assert_same_weights(src, dst)


def test_reader_never_disables_weights_only(tmp_path, monkeypatch):
    """Every torch.load call made while reading a config-carrying checkpoint keeps weights_only=True."""
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    path = save({"model": tiny_vfn().state_dict(), "best_acc1": np.float64(1.0)}, tmp_path / "c.pth")
    read_checkpoint(path)
    assert calls and all(w is True for w in calls)


def test_missing_file(tmp_path):
    with pytest.raises(VideployError, match="does not exist"):
        load_checkpoint(tiny_vfn(), tmp_path / "nope.pth")


def test_directory(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "best.pth").write_bytes(b"x")
    with pytest.raises(VideployError, match="is a directory.*best.pth"):
        load_checkpoint(tiny_vfn(), tmp_path / "ckpt")


def test_empty_file(tmp_path):
    (tmp_path / "e.pth").write_bytes(b"")
    with pytest.raises(VideployError, match="is empty"):
        load_checkpoint(tiny_vfn(), tmp_path / "e.pth")


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(0)
    for i, head in enumerate([b"", b"\x80\x02"]):  # arbitrary bytes, and bytes that start like a pickle
        path = tmp_path / f"r{i}.pth"
        path.write_bytes(head + rng.bytes(4096))
        with pytest.raises(VideployError, match="not a PyTorch checkpoint"):
            load_checkpoint(tiny_vfn(), path)


def test_truncated_checkpoint(tmp_path):
    path = save(tiny_vfn().state_dict(), tmp_path / "full.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VideployError, match="cut.pth"):
        load_checkpoint(tiny_vfn(), cut)


def test_text_file(tmp_path):
    (tmp_path / "t.pth").write_text("<html>404 Not Found</html>\n")
    with pytest.raises(VideployError, match="text file.*404 Not Found"):
        load_checkpoint(tiny_vfn(), tmp_path / "t.pth")


def test_git_lfs_pointer(tmp_path):
    (tmp_path / "w.pth").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(VideployError, match="git lfs pull"):
        load_checkpoint(tiny_vfn(), tmp_path / "w.pth")


def test_zip_that_is_not_torch(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.pth", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(VideployError, match="zip archive but not one written by torch.save.*readme.txt"):
        load_checkpoint(tiny_vfn(), tmp_path / "z.pth")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.* are deprecated; old archives still exist
def test_torchscript_archive(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "s.pt")
    with pytest.raises(VideployError, match="TorchScript"):
        load_checkpoint(tiny_vfn(), tmp_path / "s.pt")


@pytest.mark.parametrize(
    "obj, what",
    [
        ([1, 2, 3], "a list"),
        ({"epoch": 3, "optimizer": {"state": {}, "param_groups": []}}, "a dict with entries"),
        ({}, "an empty dict"),
        (torch.zeros(3), "a single tensor"),
    ],
    ids=["list", "dict-without-weights", "empty", "tensor"],
)
def test_pickle_that_is_not_a_state_dict(tmp_path, obj, what):
    path = save(obj, tmp_path / "o.pth")
    with pytest.raises(VideployError, match=f"holds {what}.*not a state dict"):
        load_checkpoint(tiny_vfn(), path)


def test_bad_source_type():
    with pytest.raises(VideployError, match="source must be"):
        load_checkpoint(tiny_vfn(), 42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Mismatch explanations
# --------------------------------------------------------------------------------------------


def _mismatch(model: torch.nn.Module, source: Any) -> str:
    with pytest.raises(VideployError) as info:
        load_checkpoint(model, source)
    return str(info.value)


def test_wrong_num_classes_hint(tmp_path):
    path = save({"model": tiny_vfn(num_classes=174).state_dict()}, tmp_path / "ssv2.pth")
    msg = _mismatch(tiny_vfn(), path)
    assert "2 keys with a different shape" in msg
    assert "head.weight checkpoint [174, 128] vs model [5, 128]" in msg
    assert "the checkpoint has num_classes=174, the model 5: create the model with num_classes=174" in msg
    assert str(path) in msg


def test_other_depths_hint():
    msg = _mismatch(tiny_vfn(), tiny_vfn(depths=[1, 1, 2, 1]).state_dict())
    assert "keys unexpected" in msg and "layers.2.blocks.1." in msg
    assert "the checkpoint has depths=[1, 1, 2, 1]; the model depths=[1, 1, 1, 1]" in msg


def test_zoo_name_hint_for_another_configuration():
    """A STAM-32 checkpoint into a STAM-16 model: the error names the zoo model it fits (meta device: shapes only)."""
    with torch.device("meta"):
        model, other = vm.create("stam_16"), vm.create("stam_32")
    msg = _mismatch(model, other.state_dict())
    assert "aggregate.pos_embed checkpoint [1, 33, 768] vs model [1, 17, 768]" in msg
    assert 'it fits videploy.models.create("stam_32")' in msg


def test_other_family_is_recognised():
    torch.manual_seed(0)
    stam = vm.create("stam", **TINY_STAM)
    msg = _mismatch(tiny_vfn(), {"model": stam.state_dict()})
    assert "this looks like a STAM checkpoint, not a Video-FocalNet one" in msg
    assert "embed_dim=32" in msg and "depth=1" in msg


def test_mismatch_grouped_by_part():
    with torch.device("meta"):
        model = vm.create("adafocusv3_mbv2_r50")
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("local_CNN.layer4.")}
    msg = _mismatch(model, sd)
    n = sum(k.startswith("local_CNN.layer4.") for k in model.state_dict())
    assert f"{n} keys missing" in msg
    assert f"by part: local: {n} keys missing" in msg


def test_mismatch_lists_first_keys_and_counts():
    src = OrderedDict(tiny_vfn().state_dict())
    extra = {f"junk.{i}": torch.zeros(1) for i in range(8)}
    msg = _mismatch(tiny_vfn(), {**src, **extra})
    assert "8 keys unexpected" in msg and "junk.0, junk.1, junk.2, junk.3, junk.4, ... (3 more)" in msg


# --------------------------------------------------------------------------------------------
# Bounded reading: files built to exhaust time or memory, paths that are not files
# --------------------------------------------------------------------------------------------


def _zip_checkpoint(path: Path, members: dict[str, bytes | int]) -> Path:
    """A torch-style zip whose members are deflated; an int member is that many zero bytes, written in chunks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            if isinstance(data, int):
                with z.open(name, "w", force_zip64=True) as f:
                    for _ in range(data >> 20):
                        f.write(bytes(1 << 20))
            else:
                z.writestr(name, data)
    return path


@contextlib.contextmanager
def _bounded(seconds: float, megabytes: float) -> Iterator[None]:
    """The block must finish within ``seconds`` and allocate at most ``megabytes`` (Python allocations)."""
    import time
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < megabytes, f"allocated {peak:.0f} MiB"


@pytest.mark.timeout(60)
def test_pickle_with_too_many_instructions_is_refused_early(tmp_path, monkeypatch):
    """A few KB that inflate to millions of instructions (MEMOIZE over and over): refused at the stated limit,
    without reaching torch.load and without a memo that grows with the file. (The limit is lowered here
    to keep the test short under tracemalloc; the real one is checked without it.)"""
    from videploy.models.checkpoint import pickle_scan

    path = _zip_checkpoint(tmp_path / "many.pth", {"archive/data.pkl": b"\x80\x04]" + b"\x94" * (3 * pickle_scan.MAX_OPCODES) + b".", "archive/version": b"3\n"})
    assert path.stat().st_size < 64 << 10
    with pytest.raises(VideployError, match=f"more than {pickle_scan.MAX_OPCODES:,} instructions") as info:
        read_checkpoint(path)
    assert "many.pth" in str(info.value)
    monkeypatch.setattr(pickle_scan, "MAX_OPCODES", 200_000)
    with _bounded(seconds=10, megabytes=8), pytest.raises(VideployError, match="more than 200,000 instructions"):
        read_checkpoint(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/data/0"], ids=["pickle", "tensor-record"])
def test_zip_bomb_is_refused_before_inflating(tmp_path, member):
    """~100 KB that decompress to 96 MiB: refused from the archive's directory, before any member is inflated
    (torch.load would inflate a tensor record too)."""
    sd = save({"w": torch.zeros(4)}, tmp_path / "real.pth")
    with zipfile.ZipFile(sd) as z:
        members: dict[str, bytes | int] = {i.filename.replace("real/", "archive/"): z.read(i) for i in z.infolist()}
    members[member] = 96 << 20
    path = _zip_checkpoint(tmp_path / "bomb.pth", members)
    assert path.stat().st_size < 1 << 20
    with _bounded(seconds=10, megabytes=16), pytest.raises(VideployError, match="decompresses to 100,6"):
        read_checkpoint(path)


@pytest.mark.timeout(30)
def test_huge_declared_string_is_not_allocated(tmp_path):
    """A pickle that announces a 1 TiB byte string in a 100-byte file: 'ends early', not a MemoryError or a hang."""
    path = tmp_path / "huge.pth"
    path.write_bytes(b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"x" * 100)
    with _bounded(seconds=5, megabytes=8), pytest.raises(VideployError, match="not a PyTorch checkpoint.*ends early"):
        read_checkpoint(path)


@pytest.mark.timeout(30)
def test_long_strings_are_skipped_not_kept(tmp_path):
    """A real checkpoint with a 32 MB string beside the weights still loads; the scan does not hold the string."""
    from videploy.models.checkpoint.pickle_scan import referenced_globals

    src, dst = tiny_vfn(0), tiny_vfn(1)
    path = save({"model": src.state_dict(), "notes": "x" * (32 << 20)}, tmp_path / "notes.pth")
    with _bounded(seconds=10, megabytes=8):
        names = referenced_globals(path)
    assert "torch._utils._rebuild_tensor_v2" in names
    load_checkpoint(dst, path)
    assert_same_weights(src, dst)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_device_is_not_a_regular_file():
    with pytest.raises(VideployError, match="/dev/zero is a character device, not a regular file") as info:
        load_checkpoint(tiny_vfn(), "/dev/zero")
    assert "does not exist" not in str(info.value)


def test_directory_is_not_reported_missing_by_export(tmp_path):
    from videploy.export.api import build_model

    with pytest.raises(VideployError, match="is a directory, not a checkpoint file") as info:
        build_model("video_focalnet", dict(TINY_VFN), checkpoint=tmp_path)
    assert "does not exist" not in str(info.value)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_pickle_with_code_is_refused_as_code(tmp_path, protocol):
    """Not a torch.save file but a bare pickle.dumps with os.system: reported as code, not as a parse failure."""
    import pickle

    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": 1}, "x": _RunsCommand(target)}, protocol=protocol))
    with pytest.raises(CodeInCheckpoint) as info:
        load_checkpoint(tiny_vfn(), path)
    msg = str(info.value)
    assert "tries to run code" in msg and "os.system" in msg and "exhausted" not in msg
    assert not target.exists()


@FORMATS
def test_code_named_before_damage_is_refused_as_code(tmp_path, legacy):
    """A file cut after its pickle named os.system is reported as code, the stronger statement."""
    path = save({"payload": _RunsCommand(tmp_path / "pwned"), "model": tiny_vfn().state_dict()}, tmp_path / "evil.pth", legacy)
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    if legacy:
        cut.write_bytes(data[: data.index(b"system") + 200])
    else:  # a damaged pickle inside an intact archive: rewrite data.pkl cut short
        with zipfile.ZipFile(path) as z, zipfile.ZipFile(cut, "w") as out:
            for info in z.infolist():
                blob = z.read(info)
                out.writestr(info, blob[: blob.index(b"system") + 200] if info.filename.endswith("data.pkl") else blob)
    with pytest.raises(CodeInCheckpoint, match="os.system"):
        read_checkpoint(cut)


# --------------------------------------------------------------------------------------------
# Hashing once, wrapper prefixes in one place
# --------------------------------------------------------------------------------------------


def test_read_checkpoint_file_carries_the_hash_and_loads(tmp_path):
    from videploy.models.checkpoint import CheckpointFile, read_checkpoint_file

    src, dst = tiny_vfn(0), tiny_vfn(1)
    path = save({"model": src.state_dict()}, tmp_path / "w.pth")
    ckpt = read_checkpoint_file(path)
    assert isinstance(ckpt, CheckpointFile) and ckpt.path == path
    assert ckpt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    report = load_checkpoint(dst, ckpt)
    assert report.sha256 == ckpt.sha256 and report.source == str(path) and report.unwrapped == ("['model']",)
    assert_same_weights(src, dst)
    assert read_checkpoint_file(path, expected_sha256=ckpt.sha256).sha256 == ckpt.sha256


def test_expected_hash_is_checked_before_the_content(tmp_path):
    from videploy.models.checkpoint import ChecksumMismatch, read_checkpoint_file

    path = tmp_path / "other.pth"
    path.write_text("not a checkpoint at all")  # read, it would be "a text file"
    with pytest.raises(ChecksumMismatch, match="other.pth has the SHA-256 .*not the expected 00") as info:
        read_checkpoint_file(path, expected_sha256="00" * 32)
    assert info.value.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_hashes_the_checkpoint_once(tmp_path, monkeypatch):
    from videploy.export.api import build_model
    from videploy.models.checkpoint import reading

    calls = []
    real = reading.file_sha256
    monkeypatch.setattr(reading, "file_sha256", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    path = save({"model": tiny_vfn(0).state_dict()}, tmp_path / "w.pth")
    _, _, weights, _ = build_model("video_focalnet", dict(TINY_VFN), checkpoint=path)
    assert len(calls) == 1
    assert weights == {"file": "w.pth", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_strip_wrapper_prefixes():
    from videploy.models.checkpoint import strip_wrapper_prefixes

    sd = {"module._orig_mod.a.w": 1, "module._orig_mod.b._orig_mod.c": 2}
    assert strip_wrapper_prefixes(sd) == ({"a.w": 1, "b.c": 2}, ("prefix 'module.'", "prefix '_orig_mod.'", "'._orig_mod.' segments"))
    assert strip_wrapper_prefixes({"module.a": 1, "b": 2}) == ({"module.a": 1, "b": 2}, ())  # not every key: a real name
    assert strip_wrapper_prefixes({}) == ({}, ())


@pytest.mark.parametrize("family", ["video_focalnet", "stam"])
def test_family_convert_strips_the_same_prefixes(family):
    """The families' own convert (for an official state dict used directly) strips what load_checkpoint strips."""
    convert = vm.get(family).family.convert
    sd = {"_orig_mod.module.head.weight": torch.zeros(2), "_orig_mod.module.head.bias": torch.zeros(2)}
    assert set(convert(sd)) == {"head.weight", "head.bias"}


# --------------------------------------------------------------------------------------------
# .safetensors
# --------------------------------------------------------------------------------------------


def _safetensors(sd: dict[str, torch.Tensor], path: Path) -> Path:
    st = pytest.importorskip("safetensors.torch")
    st.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_safetensors_round_trip(tmp_path):
    src, dst = tiny_vfn(0), tiny_vfn(1)
    path = _safetensors({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "w.safetensors")
    report = load_checkpoint(dst, path)
    assert report.unwrapped == ("prefix 'module.'",)
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_same_weights(src, dst)


def _rewrite_header(path: Path, edit: Any) -> None:
    import json

    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = edit(json.loads(data[8 : 8 + n]))
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), r"lies at bytes .* the file holds only .* \(it is truncated\)"),
        (lambda p: p.write_bytes(p.read_bytes()[:40]), r"header is .* bytes long, but the file has only 32 .*truncated"),
        (lambda p: p.write_bytes(p.read_bytes()[:5]), "fewer than the 8 of the header length"),
        (lambda p: p.write_bytes((1 << 40).to_bytes(8, "little") + b"{}"), "header length is 1,099,511,627,776 bytes"),
        (lambda p: p.write_bytes((7).to_bytes(8, "little") + b"{nope!}"), "header is not valid JSON"),
        (lambda p: _rewrite_header(p, lambda h: {**h, "head.bias": {**h["head.bias"], "shape": [1000000]}}), r"tensor 'head.bias' of shape \[1000000\] \(F32\) needs 4,000,000 bytes"),
        (lambda p: _rewrite_header(p, lambda h: {**h, "head.bias": {**h["head.bias"], "dtype": "F128"}}), "dtype 'F128'"),
    ],
    ids=["truncated-data", "truncated-header", "no-length", "huge-length", "bad-json", "shape-vs-offsets", "unknown-dtype"],
)
def test_damaged_safetensors(tmp_path, damage, message):
    path = _safetensors(tiny_vfn().state_dict(), tmp_path / "w.safetensors")
    damage(path)
    with _bounded(seconds=10, megabytes=16), pytest.raises(VideployError, match=message) as info:
        load_checkpoint(tiny_vfn(), path)
    assert "damaged .safetensors file" in str(info.value) and "w.safetensors" in str(info.value)
