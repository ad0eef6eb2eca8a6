"""Which CPU backend ``videploy predict`` uses for a bundle when ``--backend`` is not given.

Whichever the measurements say: ``videploy bench BUNDLE --backend onnxruntime,openvino
--set-default`` times the candidates side by side, and :func:`choose_cpu_backend` picks the one
with the lowest model time per video (AdaFocusV3: the whole chain with every step, timed through
the runtime on each backend), as the geometric mean over the batch sizes timed.
The choice goes into the manifest's ``provenance["cpu_backend"]`` with its numbers, the machine
and the command, so the default can be traced to the run that set it. Without a record, or when
the recorded backend's library is not installed, ``onnxruntime`` is the default.

Only FP32 runs of the runtime's own backends are candidates: graph variants (``NAME@int8-cpu``)
are a precision choice the user makes, and the PyTorch reference is what we measure against.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from videploy.bundle.bundle import Bundle
from videploy.bundle.manifest import write_manifest
from videploy.errors import VideployError
from videploy.jsonsafe import encode

PROVENANCE_KEY = "cpu_backend"
FALLBACK = "onnxruntime"
EXTRAS = {"openvino": "openvino", "onnxruntime": "cpu"}  # backend -> the pip extra that installs it


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    seconds_per_video: dict[str, dict[int, float]]  # candidate -> batch -> model seconds per video
    speedup: dict[str, float]  # candidate -> how many times slower it was than the choice (geometric mean)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds_per_video"] = {k: {str(b): s for b, s in v.items()} for k, v in self.seconds_per_video.items()}
        return d


def _model_seconds(report: Any) -> dict[str, dict[int, float]]:
    """Candidate backend -> batch -> model-only seconds per video, from the graph timings."""
    from videploy.runtime.backends import BACKENDS, backend_class

    ee = report.manifest.early_exit
    per: dict[str, dict[int, float]] = {}
    if getattr(report, "whole_model", None):  # AdaFocusV3: the chain as a video runs it
        for g in report.whole_model:
            for name, t in g.timings.items():
                if "@" not in name and ":" not in name and name in BACKENDS and not backend_class(name).reference:
                    per.setdefault(name, {})[g.batch] = t.stats.median / g.batch
        return per
    calls = {"glance": 1, "policy": 1, "local": ee.num_steps} if ee is not None else {"main": 1}
    names = {n for g in report.graphs for n in g.timings}
    for name in names:
        if "@" in name or ":" in name or name not in BACKENDS or backend_class(name).reference:
            continue
        for batch in sorted({g.batch for g in report.graphs}):
            rows = {g.role: g for g in report.graphs if g.batch == batch}
            if any(role not in rows or name not in rows[role].timings for role in calls):
                continue
            seconds = sum(n * rows[role].timings[name].stats.median for role, n in calls.items()) / batch
            per.setdefault(name, {})[batch] = seconds
    return per


def choose_cpu_backend(report: Any) -> BackendChoice:
    """The fastest FP32 CPU backend of a benchmark run (see the module docstring)."""
    if report.settings.get("device", "cpu") != "cpu":
        raise VideployError(f"--set-default chooses predict's CPU backend; this run measured --device {report.settings.get('device')}")
    if report.manifest.precision != "fp32" or report.settings.get("precision") not in (None, "fp32"):
        raise VideployError("--set-default compares FP32 runs; drop --precision (INT8 is chosen with predict --precision)")
    per = _model_seconds(report)
    # compare on the batch sizes every candidate ran
    common = sorted(set.intersection(*(set(v) for v in per.values()))) if per else []
    if not common:
        raise VideployError("--set-default needs at least one runtime backend (onnxruntime, openvino) timed on every graph; none was (see the skipped backends above)")

    def geo(name: str) -> float:
        return math.exp(sum(math.log(per[name][b]) for b in common) / len(common))

    best = min(per, key=geo)
    speedup = {n: geo(n) / geo(best) for n in per}
    others = [f"{n} {speedup[n]:.2f}x slower" for n in sorted(per, key=geo) if n != best]
    batches = ",".join(str(b) for b in common)
    reason = (
        f"fastest FP32 model time per video on this machine at batch {batches} ({geo(best) * 1e3:.1f} ms, geometric mean)"
        + (f"; {', '.join(others)}" if others else "; the only runtime backend that ran")
    )
    return BackendChoice(best, {n: {b: per[n][b] for b in common} for n in per}, speedup, reason)


def record_choice(bundle: str | Path | Bundle, choice: BackendChoice, report: Any) -> Path:
    """Write the choice into the bundle's manifest (atomically), with the run it came from."""
    from videploy.bench.machine import describe

    b = Bundle.of(bundle)
    entry = {**choice.to_dict(), "machine": describe(report.machine), "command": report.command, "threads": report.settings.get("threads")}
    manifest = b.manifest.with_updates(provenance={**b.manifest.provenance, PROVENANCE_KEY: encode(entry)})
    return write_manifest(b.root, manifest)


def default_backend(bundle: Bundle, device: str | None = None, precision: str | None = None) -> tuple[str, str | None]:
    """(backend name, a note saying why) for a run that did not name a backend."""
    entry = bundle.manifest.provenance.get(PROVENANCE_KEY)
    if not isinstance(entry, dict) or device not in (None, "cpu") or precision not in (None, "fp32"):
        return FALLBACK, None
    name = entry.get("backend")
    from videploy.runtime.backends import BACKENDS

    if name not in BACKENDS or name == FALLBACK:
        return FALLBACK, None if name == FALLBACK else f"the bundle records an unknown CPU backend {str(name)[:40]!r}; using {FALLBACK}"
    if importlib.util.find_spec(name) is None:
        extra = EXTRAS.get(name, name)
        return FALLBACK, f"this bundle ran fastest on {name} when benchmarked, but {name} is not installed here (pip install 'videploy[{extra}]'); using {FALLBACK}"
    return name, f"backend {name}: the bundle's measured default ({entry.get('reason', 'videploy bench --set-default')}; {entry.get('machine', 'machine unknown')})"
