"""Shared fixtures. Reference data lives beside the checkout in ../shared (CI clones it that way)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Demo clips, calibration inputs and engines go to a cache of this session's own, never ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIDEPLOY_CACHE", str(tmp_path_factory.mktemp("videploy-cache")))
        yield


def reference_dir() -> Path:
    """``$VIDEPLOY_REFERENCE_DIR`` or ``../shared/reference`` beside the checkout."""
    env = os.environ.get("VIDEPLOY_REFERENCE_DIR")
    return Path(env) if env else REPO.parent / "shared" / "reference"


def reference_vectors() -> list[Path]:
    d = reference_dir()
    vectors = sorted(d.glob("*.npz"))
    if not vectors and os.environ.get("CI"):
        raise RuntimeError(f"no reference vectors found in {d}; CI must run with shared/ beside the checkout")
    return vectors


def reference_vector(ref_dir: Path, stem: str) -> tuple[dict, dict]:
    """``(sidecar, arrays)`` of ``ref_dir/stem.npz`` (see tests/reference_vectors.py); skips if it is missing."""
    from tests.reference_vectors import load_vector

    path = ref_dir / f"{stem}.npz"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"reference vector {path} is missing")
        pytest.skip(f"reference vector {path} is missing")
    return load_vector(path)


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    d = reference_dir()
    if not d.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"reference directory {d} is missing")
        pytest.skip(f"reference directory {d} is missing (set VIDEPLOY_REFERENCE_DIR)")
    return d
