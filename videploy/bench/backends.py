"""Open the backends a benchmark compares, each one or a one-line reason why it cannot run here.

Names are the backend registry's (:data:`videploy.runtime.backends.BACKENDS`); the PyTorch
reference is imported only when asked for, so a device without torch still benchmarks the others.
A backend that cannot start (library not installed, no GPU, no engines in the bundle, torch
missing) is *skipped* with the reason; only when none can run is that an error. Each backend class
picks its device for the benchmark's ``--device`` (:meth:`Backend.device_for`: TensorRT always
``cuda``, torch ``cuda`` for a GPU run) and reports the threads it computes with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from videploy.bench.machine import peak_rss_mb, reset_peak_rss
from videploy.bundle.bundle import Bundle
from videploy.errors import VideployError
from videploy.runtime.backends import BACKENDS, BackendSpec, backend_class, open_backend
from videploy.runtime.backends.base import Backend


@dataclass
class BackendSlot:
    """A backend a benchmark asked for: opened (``backend``) or skipped (``reason``)."""

    name: str
    device: str
    backend: Backend | None = None
    reason: str | None = None
    load_s: float | None = None  # cold start: opening the backend (sessions / engines loaded)
    load_peak_rss_mb: float | None = None  # the process's peak resident memory while it loaded

    @property
    def ok(self) -> bool:
        return self.backend is not None

    @property
    def threads(self) -> int | None:
        return self.backend.threads if self.backend is not None else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "device": self.device, "status": "ok" if self.ok else "skipped"}
        if self.ok:
            d["threads"] = self.threads
            d["load_s"] = self.load_s
            d["load_peak_rss_mb"] = self.load_peak_rss_mb
        else:
            d["reason"] = self.reason
        return d


def parse_backends(text: str | Sequence[str]) -> list[str]:
    """``"onnxruntime,onnxruntime@int8-cpu,torch:channels_last"`` -> the names (registered backends, no repeats).

    ``NAME@VARIANT`` is backend NAME on the bundle's graph variant VARIANT (e.g. ``onnxruntime@int8-cpu``:
    precisions of one bundle side by side); ``NAME:OPTION`` is NAME with its boolean option OPTION on
    (e.g. ``torch:channels_last``, ``torch:compile``: the fair PyTorch baselines). Each is timed as a
    backend of its own.
    """
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not names:
        raise VideployError(f"--backend needs at least one of {', '.join(BACKENDS)}")
    for n in names:
        base, variant, option = split_name(n)
        if base not in BACKENDS or variant == "":
            raise VideployError(
                f"--backend {n!r} is not a backend; choose from {', '.join(BACKENDS)} (comma-separated; NAME@VARIANT for a graph variant, "
                "e.g. onnxruntime@int8; NAME:OPTION for an option, e.g. torch:channels_last)"
            )
        if option and option not in _declared(base):
            raise VideployError(f"--backend {n!r}: the {base} backend has no option {option!r} (it has {', '.join(_declared(base)) or 'none'})")
    if len(set(names)) != len(names):
        raise VideployError(f"--backend lists a backend twice: {names}")
    return names


def split_name(name: str) -> tuple[str, str | None, str | None]:
    """``"onnxruntime@int8-cpu"`` -> ("onnxruntime", "int8-cpu", None); ``"torch:compile"`` -> ("torch", None, "compile")."""
    rest, _, option = name.partition(":")
    base, at, variant = rest.partition("@")
    return base, (variant if at else None), (option or None)


def _declared(name: str) -> tuple[str, ...]:
    try:
        return backend_class(name).options
    except ImportError:
        return ()


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def open_backends(
    names: Sequence[str],
    bundle: Bundle,
    device: str = "cpu",
    threads: int | None = None,
    precision: str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    factories: Mapping[str, BackendSpec] | None = None,
) -> list[BackendSlot]:
    """One :class:`BackendSlot` per name, in order, each on the device its class picks for ``device``.

    ``threads`` goes to every backend that takes that option (onnxruntime's intra-op threads, torch's
    ``set_num_threads``), so both sides of a ratio use the same cores. ``options[name]`` adds options
    for one backend (e.g. ``{"torch": {"checkpoint": path}}``); ``factories[name]`` replaces how a
    name is built (e.g. the torch backend on an in-memory model).
    """
    slots = []
    for name in names:
        slot = BackendSlot(name=name, device=device)
        base, variant, option = split_name(name)
        try:
            cls = backend_class(base)
            slot.device = cls.device_for(device)
            opts = dict((options or {}).get(base, {}))
            if option:
                opts[option] = True
            if threads is not None and "threads" in cls.options:
                opts["threads"] = threads
            spec = (factories or {}).get(name) or (factories or {}).get(base) or base
            reset_peak_rss()
            t0 = time.perf_counter()
            slot.backend = open_backend(spec, bundle, device=slot.device, precision=variant or precision, **opts)
            slot.load_s = time.perf_counter() - t0
            slot.load_peak_rss_mb = peak_rss_mb()
        except (VideployError, ImportError) as exc:  # a backend that cannot run here is skipped, with why
            slot.reason = one_line(str(exc))
        slots.append(slot)
    if not any(s.ok for s in slots):
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in slots)
        raise VideployError(f"none of the requested backends can run here ({reasons})")
    return slots


def reference_of(slots: Sequence[BackendSlot]) -> str:
    """The backend ratios are relative to: the PyTorch reference when it ran, else the first that ran."""
    running = [s for s in slots if s.ok]
    for s in running:
        if s.backend.reference:
            return s.name
    return running[0].name


def close_all(slots: Sequence[BackendSlot]) -> None:
    for s in slots:
        if s.backend is not None:
            s.backend.close()
