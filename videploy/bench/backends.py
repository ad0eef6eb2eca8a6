"""Open the backends a benchmark compares, each one or a one-line reason why it cannot run here.

Names: ``onnxruntime`` and ``tensorrt`` (the runtime's backends) and ``torch`` (the PyTorch
reference backend from :mod:`videploy.export.torch_backend`, imported only when asked for, so a
device without torch still benchmarks the others). A backend that cannot start (library not
installed, no GPU, no engines in the bundle, torch missing) is *skipped* with the reason; only when
none can run is that an error.

Devices: ``tensorrt`` always runs on ``cuda``; ``torch`` on ``cuda`` when the benchmark's device
is a GPU one, else ``cpu``; ``onnxruntime`` on the given device (``cpu``, ``cuda`` or ``tensorrt``
for its execution providers).

Threads: ``threads`` sets onnxruntime's intra-op threads and, when the torch backend runs,
``torch.set_num_threads`` (process-wide), so both sides of a ratio use the same number of cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from videploy.bundle.manifest import Manifest
from videploy.errors import VideployError
from videploy.runtime.backends.base import Backend

KNOWN = ("onnxruntime", "torch", "tensorrt")
REFERENCE = "torch"  # the PyTorch reference: ratios are relative to it when it ran

BackendFactory = Callable[..., Backend]


@dataclass
class BackendSlot:
    """A backend a benchmark asked for: opened (``backend``) or skipped (``reason``)."""

    name: str
    device: str
    backend: Backend | None = None
    reason: str | None = None
    threads: int | None = None  # intra-op threads it runs with, when known

    @property
    def ok(self) -> bool:
        return self.backend is not None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "device": self.device, "status": "ok" if self.ok else "skipped"}
        if self.ok:
            d["threads"] = self.threads
        else:
            d["reason"] = self.reason
        return d


def parse_backends(text: str | Sequence[str]) -> list[str]:
    """``"onnxruntime,torch"`` -> ``["onnxruntime", "torch"]`` (known names, no repeats)."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not names:
        raise VideployError(f"--backend needs at least one of {', '.join(KNOWN)}")
    for n in names:
        if n not in KNOWN:
            raise VideployError(f"--backend {n!r} is not a backend; choose from {', '.join(KNOWN)} (comma-separated)")
    if len(set(names)) != len(names):
        raise VideployError(f"--backend lists a backend twice: {names}")
    return names


def device_for(name: str, device: str) -> str:
    if name == "tensorrt":
        return "cuda"
    if name == "torch":
        return "cuda" if device in ("cuda", "tensorrt") else "cpu"
    return device


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def open_backends(
    names: Sequence[str],
    bundle_dir: str | Path,
    manifest: Manifest,
    device: str = "cpu",
    threads: int | None = None,
    precision: str | None = None,
    checkpoint: str | Path | None = None,
    factories: Mapping[str, BackendFactory] | None = None,
) -> list[BackendSlot]:
    """One :class:`BackendSlot` per name, in order. ``factories`` replace how a name is built
    (``factory(bundle_dir, manifest, device=..., precision=...)``; e.g. the torch backend with
    ``model=`` an in-memory model)."""
    slots = []
    for name in names:
        dev = device_for(name, device)
        slot = BackendSlot(name=name, device=dev)
        try:
            factory = (factories or {}).get(name) or _factory(name, threads, checkpoint)
            slot.backend = factory(Path(bundle_dir), manifest, device=dev, precision=precision)
        except (VideployError, ImportError) as exc:  # a backend that cannot run here is skipped, with why
            slot.reason = one_line(str(exc))
        if slot.ok:
            slot.threads = _configure_threads(slot, threads)
        slots.append(slot)
    if not any(s.ok for s in slots):
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in slots)
        raise VideployError(f"none of the requested backends can run here ({reasons})")
    return slots


def _factory(name: str, threads: int | None, checkpoint: str | Path | None) -> BackendFactory:
    if name == "onnxruntime":
        from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return partial(OnnxRuntimeBackend, threads=threads)
    if name == "tensorrt":
        from videploy.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend
    if name == "torch":
        from videploy.export.torch_backend import (
            TorchBackend,  # numpy-only at import; torch is required on open
        )

        return partial(TorchBackend, checkpoint=checkpoint)
    raise VideployError(f"unknown backend {name!r}; choose from {', '.join(KNOWN)}")


def _configure_threads(slot: BackendSlot, threads: int | None) -> int | None:
    b = slot.backend
    if slot.name == "torch" or getattr(b, "name", "") == "torch":
        torch = getattr(b, "torch", None)
        if torch is None:
            return None
        if threads is not None:
            torch.set_num_threads(int(threads))
        return int(torch.get_num_threads())
    if slot.name == "onnxruntime":
        return threads  # None: onnxruntime's default (one thread per physical core)
    return None


def close_all(slots: Sequence[BackendSlot]) -> None:
    for s in slots:
        if s.backend is not None:
            s.backend.close()
