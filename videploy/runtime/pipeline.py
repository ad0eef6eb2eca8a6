"""Decoding overlapped with inference: an ordered, bounded prefetch over worker threads.

OpenCV releases the GIL while FFmpeg decodes and while it resizes, and the backends release it
while a graph runs, so plain threads overlap the two stages: with decode workers feeding a
bounded window, end-to-end throughput approaches the slower stage's instead of the sum of both.
Memory stays bounded by the window (``depth`` decoded videos at most), not by the number of
videos, and results keep the input order.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_prefetch(items: Iterable[T], fn: Callable[[T], R], workers: int, depth: int | None = None) -> Iterator[tuple[T, R | Exception]]:
    """``(item, fn(item))`` in input order, computed ``workers`` at a time ahead of the consumer.

    At most ``depth`` (default ``2 * workers``) results are computed or waiting at once. An
    exception raised by ``fn`` is yielded in place of its result (the caller decides). With
    ``workers == 0`` everything runs in the calling thread, one item at a time.
    """
    if workers <= 0:
        for item in items:
            try:
                yield item, fn(item)
            except Exception as exc:  # handed to the caller, in order, like the threaded path
                yield item, exc
        return
    depth = max(1, depth if depth is not None else 2 * workers)
    window: deque[tuple[T, Future]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="videploy-decode")
    try:
        for item in items:
            window.append((item, pool.submit(fn, item)))
            if len(window) >= depth:
                yield _resolved(window.popleft())
        while window:
            yield _resolved(window.popleft())
    finally:
        for _, future in window:  # the consumer stopped early: do not decode what nobody will read
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _resolved(entry: tuple[T, Future]) -> tuple[T, object]:
    item, future = entry
    try:
        return item, future.result()
    except Exception as exc:
        return item, exc
