"""Ordered, bounded prefetch: decoding overlaps inference without reordering or piling up."""

from __future__ import annotations

import threading
import time

import pytest

from videploy.runtime.pipeline import ordered_prefetch


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_order_and_errors_are_kept(workers):
    def fn(i):
        if i == 3:
            raise ValueError("bad video")
        time.sleep(0.002 * (5 - i % 5))  # later items finish first
        return i * 10

    out = list(ordered_prefetch(range(8), fn, workers))
    assert [i for i, _ in out] == list(range(8))
    assert [r for i, r in out if i != 3] == [i * 10 for i in range(8) if i != 3]
    assert isinstance(out[3][1], ValueError)


def test_window_bounds_work_in_flight():
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def fn(i):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.005)
        with lock:
            state["now"] -= 1
        return i

    started = []
    for i, _ in ordered_prefetch((started.append(i) or i for i in range(40)), fn, workers=2, depth=4):
        assert len(started) - i <= 4  # never more than `depth` items taken ahead of the consumer
    assert state["peak"] <= 2


def test_decoding_overlaps_the_consumer():
    """While the consumer still works on video i, video i + 1 is already being decoded (no timing involved)."""
    started = {i: threading.Event() for i in range(5)}

    def decode(i):
        started[i].set()
        return i

    for i, _ in ordered_prefetch(range(5), decode, workers=1):
        if i + 1 < 5:  # the "model" is busy with i: the next decode must start meanwhile
            assert started[i + 1].wait(timeout=10), f"video {i + 1} was not decoded while video {i} ran"


def test_consumer_stopping_early_cancels_the_rest():
    seen = []

    def fn(i):
        seen.append(i)
        return i

    gen = ordered_prefetch(range(1000), fn, workers=1, depth=2)
    next(gen)
    gen.close()
    assert len(seen) < 10
