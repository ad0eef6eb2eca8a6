"""Every official reference vector reproduces through tests/reference_vectors.py:run_vector."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import reference_vectors
from tests.reference_vectors import load_vector, run_vector

# The reference README's recommended comparison for a float32 re-implementation.
LOOSE = {"featmap", "featmap_layer4", "patches_images"}  # atol 2e-3
EXACT_PREFIXES = ("psi_indices", "shift_div")


@pytest.mark.parametrize("npz", reference_vectors(), ids=lambda p: p.stem)
def test_reference_vector(npz):
    _, arrays = load_vector(npz)
    got = run_vector(npz)
    assert set(got) == set(arrays["out"])
    for name, ref in arrays["out"].items():
        out = got[name]
        assert out.shape == ref.shape, f"{name}: shape {out.shape} != {ref.shape}"
        if name.startswith(EXACT_PREFIXES):
            np.testing.assert_array_equal(out.astype(np.float64), ref.astype(np.float64), err_msg=name)
        else:
            atol = 2e-3 if name in LOOSE else 1e-4
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=atol, err_msg=name)
