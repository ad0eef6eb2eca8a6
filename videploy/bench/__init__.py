"""Latency and throughput measurement: ``videploy bench`` and the scripts in ``benchmarks/``.

* :mod:`~videploy.bench.timing` -- warm-up, interleaved repetitions (A B A B ...), median / p90 /
  IQR, throughput and ratios; standard library only.
* :mod:`~videploy.bench.machine` -- the machine and versions a number was measured on.
* :mod:`~videploy.bench.backends` -- open the backends to compare, or say why one cannot run.
* :mod:`~videploy.bench.inputs` -- real decoded frames: a stream of clips, graph inputs per role.
* :mod:`~videploy.bench.bundle` -- :func:`bench_bundle`: graph latency per backend and batch,
  decode time, and (AdaFocusV3) :mod:`~videploy.bench.adaptive`: early exit vs all steps, static
  vs continuous batching.

Like the runtime it measures, this package never imports torch itself; the PyTorch reference
backend is opened only on request and skipped (with the reason) where torch is missing.
Speed is reported as ratios measured side by side in one run, never asserted in tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from videploy.bench.bundle import BenchReport, bench_bundle
    from videploy.bench.timing import Case, Stats, Timing, measure_interleaved, percentile, speedup

_LAZY = {
    "bench_bundle": "videploy.bench.bundle",
    "BenchReport": "videploy.bench.bundle",
    "Case": "videploy.bench.timing",
    "Stats": "videploy.bench.timing",
    "Timing": "videploy.bench.timing",
    "measure_interleaved": "videploy.bench.timing",
    "percentile": "videploy.bench.timing",
    "speedup": "videploy.bench.timing",
}

__all__ = ["BenchReport", "Case", "Stats", "Timing", "bench_bundle", "measure_interleaved", "percentile", "speedup"]


def __getattr__(name: str) -> Any:
    # lazy, so `import videploy.bench.timing` does not pull in OpenCV and the runtime
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'videploy.bench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
