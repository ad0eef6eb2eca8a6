"""The calibration input cache: entries read back exactly, and the folder stays under its bound."""

from __future__ import annotations

import os

import numpy as np

from videploy.calibration.int8.inputs import CachedData, GraphInputs, InputCache
from videploy.calibration.int8.videos import Clip


def _data(seed: int, rows: int = 4) -> CachedData:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 3, 8, 8)).astype(np.float32)
    return CachedData(GraphInputs({"main": {"frames": x}}), (Clip("a.mp4", 1, x[0]),), rows, ("b.mp4: unreadable",))


def test_an_entry_reads_back_exactly(tmp_path):
    cache = InputCache(tmp_path)
    stored = _data(0)
    cache.store("k", stored)
    got = cache.load("k")
    assert got is not None
    np.testing.assert_array_equal(got.inputs.arrays["main"]["frames"], stored.inputs.arrays["main"]["frames"])
    assert got.holdout[0].source == "a.mp4" and got.holdout[0].index == 1
    np.testing.assert_array_equal(got.holdout[0].frames, stored.holdout[0].frames)
    assert got.calibration_clips == 4 and got.skipped == ("b.mp4: unreadable",)
    assert cache.load("missing") is None


def test_least_recently_used_entries_go_when_the_folder_outgrows_its_bound(tmp_path):
    probe = InputCache(tmp_path / "probe")
    size = probe.store("x", _data(0)).stat().st_size
    cache = InputCache(tmp_path, max_bytes=int(2.5 * size))  # room for two entries
    for i, key in enumerate(["old", "used", "new"]):
        path = cache.store(key, _data(i))
        os.utime(path, (1000 + i, 1000 + i))  # distinct ages, whatever the file system's clock grain
        if key == "used":
            assert {p.stem for p in (tmp_path / "inputs").glob("*.npz")} == {"old", "used"}
    # "old" was stored first and never read again: it is the one to go
    assert {p.stem for p in (tmp_path / "inputs").glob("*.npz")} == {"used", "new"}

    assert cache.load("used") is not None  # now the most recently used
    os.utime(cache.path("new"), (2000, 2000))
    os.utime(cache.path("used"), (3000, 3000))
    cache.store("newest", _data(3))
    assert {p.stem for p in (tmp_path / "inputs").glob("*.npz")} == {"used", "newest"}


def test_a_single_entry_over_the_bound_is_kept(tmp_path):
    cache = InputCache(tmp_path, max_bytes=1)
    cache.store("big", _data(0))
    assert cache.load("big") is not None
