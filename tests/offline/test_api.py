"""The run summary's arithmetic (no Ray needed)."""

from __future__ import annotations

import numpy as np

from videploy.offline.api import _FinishClock


def test_steady_rate_is_the_middle_half_of_the_rows():
    one = _FinishClock()  # one actor: a call of 8 rows every 3 s, after a long start-up
    for t in (100.0, 103.0, 106.0, 109.0):
        one.add(np.full(8, t))
    assert one.steady_rate() == 16 / 6
    two = _FinishClock()  # two actors, each a call of 8 rows every 3 s: twice the rate
    two.add(np.array([100.0] * 8 + [100.2] * 8))  # one result table may hold several calls
    two.add(np.full(8, 103.0))
    two.add(np.full(8, 103.2))
    assert two.steady_rate() == 16 / 3
    few = _FinishClock()
    few.add(np.full(8, 100.0))
    assert few.steady_rate() is None  # too few calls to tell start-up from steady work
