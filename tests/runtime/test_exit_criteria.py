"""The exit criterion: values, direction, and independence from the batch a video runs in."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videploy.errors import VideployError
from videploy.runtime.exit_criteria import (
    always_stops,
    criterion_values,
    most_confident_first,
    never_stops,
    stops,
)


def _entropy_reference(row: np.ndarray) -> float:
    p = [math.exp(float(x)) for x in row]
    z = math.fsum(p)
    return -math.fsum(q / z * math.log(q / z) for q in p if q > 0)


def test_entropy_and_confidence_values():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3, 11)).astype(np.float32) * 3
    ent = criterion_values(logits, "entropy")
    assert ent.shape == (5, 3) and ent.dtype == np.float64
    for idx in np.ndindex(5, 3):
        assert ent[idx] == pytest.approx(_entropy_reference(logits[idx]), rel=1e-12, abs=1e-14)
    np.testing.assert_array_equal(criterion_values(logits, "confidence"), logits.max(axis=-1).astype(np.float64))
    assert criterion_values(np.zeros(7), "entropy") == pytest.approx(math.log(7), rel=1e-15)


def test_extreme_logits_give_numbers_not_nan():
    # float32 softmax underflows to 0 here, and 0 * log(0) would be nan
    x = np.array([[500.0, -500.0, 0.0], [1e4, 1e4, -1e4]], dtype=np.float32)
    ent = criterion_values(x)
    assert np.isfinite(ent).all() and 0 <= ent[0] < 1e-200 and ent[1] == pytest.approx(math.log(2), rel=1e-15)
    with pytest.raises(VideployError, match="finite"):
        criterion_values(np.array([1.0, np.nan]))


@pytest.mark.parametrize("criterion", ["entropy", "confidence"])
def test_a_video_value_does_not_depend_on_its_batch(criterion):
    rng = np.random.default_rng(1)
    batch = (rng.normal(size=(37, 400)) * rng.uniform(0.1, 20, size=(37, 1))).astype(np.float32)
    whole = criterion_values(batch, criterion)
    for size in (1, 2, 3, 8, 17):
        for start in range(0, 37 - size + 1, 5):
            part = criterion_values(batch[start : start + size], criterion)
            assert part.tobytes() == whole[start : start + size].tobytes()  # bit for bit
    # a strided view and a float64 copy of the same float32 logits give the same bits too
    assert criterion_values(batch[::3], criterion).tobytes() == whole[::3].tobytes()
    assert criterion_values(batch.astype(np.float64), criterion).tobytes() == whole.tobytes()
    # a threshold exactly at a video's value stops it whatever batch it is in
    eta = whole[5]
    assert stops(criterion_values(batch[5], criterion), eta, criterion)
    assert stops(criterion_values(batch[3:9], criterion), eta, criterion)[2]


def test_direction_ties_and_infinities():
    assert stops(0.5, 0.5, "entropy") and stops(0.4, 0.5, "entropy") and not stops(0.6, 0.5, "entropy")
    assert stops(3.0, 3.0, "confidence") and stops(3.5, 3.0, "confidence") and not stops(2.5, 3.0, "confidence")
    for criterion in ("entropy", "confidence"):
        assert stops(123.0, always_stops(criterion), criterion) and not stops(123.0, never_stops(criterion), criterion)
    np.testing.assert_array_equal(most_confident_first(np.array([0.3, 0.1, 0.3, 0.0]), "entropy"), [3, 1, 0, 2])
    np.testing.assert_array_equal(most_confident_first(np.array([0.3, 0.1, 0.3, 0.0]), "confidence"), [0, 2, 1, 3])
    with pytest.raises(VideployError, match="unknown exit criterion 'max_prob'; choose one of entropy, confidence"):
        criterion_values(np.zeros(3), "max_prob")
