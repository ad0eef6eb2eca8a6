"""The one interface every backend implements, and the checks they all share.

A :class:`Backend` runs the graphs of one bundle. The base class does everything that must be the
same whatever executes the graph:

* activation: :meth:`Backend._activate` imports the library and checks the device; a missing
  library or device raises :class:`VideployError` saying how to install / what to use instead;
* input checks against the manifest's :class:`GraphSpec`: the input names, rank, fixed dimensions,
  symbolic dimensions (``"batch"`` equal across inputs and within the bundle's batch range) and
  dtypes — an error names the graph and the input;
* output checks: every output the manifest lists comes back with the batch it was given;
* counters: calls and batch rows per graph role (:class:`Counters`), so callers and tests can see
  exactly how much work ran (AdaFocusV3's early exits are checked with them).

* a fixed minimum batch (``batch.min``) is met by padding with copies of row 0, whose outputs
  are dropped (the padding rows are counted);
* recording: ``with backend.recording() as calls:`` keeps every call's inputs and outputs (on the
  host), which export verification and the benchmark use to see what the one AdaFocusV3 chain fed
  each graph.

A subclass declares ``name``, ``devices`` / ``default_device`` and the keyword ``options`` it takes
(the registry and the CLI check them), and implements :meth:`_activate`, :meth:`_load` and
:meth:`_run_impl`.

Device-resident outputs. ``run(..., fetch=names)`` asks only for the outputs in ``names`` on the
host; a backend whose memory is not host memory (TensorRT) may return the others as opaque
device handles that it accepts back as inputs, so AdaFocusV3's states stay on the device between
steps. Handles are moved with :meth:`take` (rows), :meth:`concat` and :meth:`to_host`; for
host backends all of these are plain numpy and every output is a numpy array.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Collection, Iterator, Mapping, Sequence

import numpy as np

from videploy.bundle.bundle import Bundle, BundleLike
from videploy.bundle.manifest import GraphSpec, Manifest, TensorSpec
from videploy.errors import VideployError

BATCH = "batch"


@dataclass
class Counters:
    """Work done per graph role: ``calls[role]`` executions and ``rows[role]`` batch rows in total."""

    calls: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def record(self, role: str, batch: int) -> None:
        self.calls[role] = self.calls.get(role, 0) + 1
        self.rows[role] = self.rows.get(role, 0) + batch

    def reset(self) -> None:
        self.calls.clear()
        self.rows.clear()

    def snapshot(self) -> "Counters":
        return Counters(dict(self.calls), dict(self.rows))


@dataclass(frozen=True)
class Call:
    """One recorded backend call: the graph role, its inputs and all its outputs (host arrays)."""

    role: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


class Backend(ABC):
    """Runs the graphs of one bundle. Construct with a :class:`~videploy.bundle.bundle.Bundle` (or its path)."""

    name: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    default_device: ClassVar[str] = "cpu"
    # keyword options the constructor takes beyond bundle/device/precision (checked by the registry)
    options: ClassVar[tuple[str, ...]] = ()
    # True when outputs are always numpy arrays (no device handles)
    host_memory: ClassVar[bool] = True
    # True for the PyTorch reference: benchmark ratios are relative to it when it runs
    reference: ClassVar[bool] = False
    # True when any batch size runs (the exported graphs are batch-dynamic); False when the bundle's
    # batch range is a hard limit (TensorRT engines are built for its profile)
    dynamic_batch: ClassVar[bool] = True

    def __init__(self, bundle: BundleLike, device: str | None = None, precision: str | None = None):
        self.bundle = Bundle.of(bundle)
        device = self.default_device if device is None else device
        if device not in self.devices:
            raise VideployError(f"the {self.name} backend runs on {', '.join(repr(d) for d in self.devices)}, not {device!r}; choose one of those with --device")
        self.device = device
        self.precision = precision
        self.counters = Counters()
        self._recorders: list[list[Call]] = []
        self._specs: dict[str, GraphSpec] = {g.role: g for g in self.manifest.graphs}
        self._activate()
        for g in self.manifest.graphs:
            self._load(g)

    @classmethod
    def device_for(cls, requested: str | None) -> str:
        """The device this backend runs on when a caller asks for ``requested`` (None: its default)."""
        return cls.default_device if requested is None or requested not in cls.devices else requested

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def bundle_dir(self) -> Path:
        return self.bundle.root

    @property
    def threads(self) -> int | None:
        """Intra-op threads this backend computes with, when it knows (reported by benchmarks)."""
        return None

    # --- what a subclass implements ---------------------------------------------------------------
    @abstractmethod
    def _activate(self) -> None:
        """Import the library and check the device; raise VideployError with install hints."""

    @abstractmethod
    def _load(self, graph: GraphSpec) -> None:
        """Prepare one graph (session, engine, module)."""

    @abstractmethod
    def _run_impl(self, graph: GraphSpec, inputs: Mapping[str, Any], fetch: Collection[str]) -> dict[str, Any]:
        """Run one checked call. Return every output; those in ``fetch`` as numpy arrays."""

    # --- the public call --------------------------------------------------------------------------
    def run(self, role: str, inputs: Mapping[str, Any], fetch: Collection[str] | None = None) -> dict[str, Any]:
        """Run graph ``role`` on ``inputs`` (name -> array); returns name -> output.

        Outputs in ``fetch`` (default: all) are numpy arrays; others may be device handles of this
        backend (see the module docstring).
        """
        graph = self.graph(role)
        batch = self.check_inputs(graph, inputs)
        wanted = [t.name for t in graph.outputs] if fetch is None else list(fetch)
        unknown = [n for n in wanted if n not in {t.name for t in graph.outputs}]
        if unknown:
            raise VideployError(f"graph '{role}' has no output {unknown[0]!r}; its outputs are {[t.name for t in graph.outputs]}")
        given = inputs
        pad = self.bundle.padding(batch)
        if pad:  # a fixed-batch bundle: fill with copies of row 0 and drop their outputs
            zeros = np.zeros(pad, dtype=np.int64)
            inputs = {k: self.concat([v, self.take(v, zeros)]) for k, v in inputs.items()}
        out = self._run_impl(graph, inputs, wanted)
        self._check_outputs(graph, out, batch + pad, wanted)
        self.counters.record(role, batch + pad)
        if pad:
            rows = np.arange(batch)
            out = {k: (v[:batch] if isinstance(v, np.ndarray) else self.take(v, rows)) for k, v in out.items()}
        if self._recorders:
            call = Call(role, {k: self.to_host(v).copy() for k, v in given.items()}, {k: self.to_host(v).copy() for k, v in out.items()})
            for calls in self._recorders:
                calls.append(call)
        return out

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Call]]:
        """Record every call made inside the block (inputs as fed, all outputs on the host)."""
        calls: list[Call] = []
        self._recorders.append(calls)
        try:
            yield calls
        finally:
            self._recorders.remove(calls)

    def graph(self, role: str) -> GraphSpec:
        try:
            return self._specs[role]
        except KeyError:
            raise VideployError(f"bundle of {self.manifest.model_name!r} has no graph {role!r}; it has {list(self._specs)}") from None

    # --- memory helpers (numpy for host backends) -------------------------------------------------
    def take(self, x: Any, rows: Sequence[int] | np.ndarray) -> Any:
        """Rows ``rows`` of a batch (an output or input of this backend)."""
        return np.ascontiguousarray(np.asarray(x)[np.asarray(rows, dtype=np.int64)])

    def concat(self, xs: Sequence[Any]) -> Any:
        """Batches stacked along dimension 0."""
        return np.concatenate([np.asarray(x) for x in xs], axis=0)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def close(self) -> None:
        """Release sessions / device memory. The backend is unusable afterwards."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- checks -----------------------------------------------------------------------------------
    def check_inputs(self, graph: GraphSpec, inputs: Mapping[str, Any]) -> int:
        """Validate ``inputs`` against ``graph``; return the batch size."""
        expected = [t.name for t in graph.inputs]
        missing = [n for n in expected if n not in inputs]
        extra = [n for n in inputs if n not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"unexpected {extra}")
            raise VideployError(f"graph '{graph.role}' of {self.manifest.model_name!r} takes inputs {expected}; got {', '.join(parts)}")
        symbols: dict[str, int] = {}
        for spec in graph.inputs:
            self._check_tensor(graph, spec, inputs[spec.name], symbols)
        batch = symbols.get(BATCH)
        if batch is None:  # a graph without a symbolic batch: dimension 0 of the first input
            batch = int(_shape(inputs[expected[0]])[0])
        self.bundle.check_batch(batch, f"graph '{graph.role}'", self.dynamic_batch)
        self._check_step(graph, inputs)
        return batch

    def _check_step(self, graph: GraphSpec, inputs: Mapping[str, Any]) -> None:
        """The local encoder indexes its per-step heads with ``step``: a value past them would fail deep in the graph."""
        ee = self.manifest.early_exit
        step = inputs.get("step") if graph.role == "local" else None
        if ee is None or not isinstance(step, np.ndarray) or step.size == 0:
            return
        lo, hi = int(step.min()), int(step.max())
        if lo < 0 or hi >= ee.num_steps:
            raise VideployError(
                f"input 'step' of graph 'local' must be a 0-based focus step in [0, {ee.num_steps}) for this bundle "
                f"({ee.num_steps} focus steps), got values {lo}..{hi}"
            )

    def _check_tensor(self, graph: GraphSpec, spec: TensorSpec, value: Any, symbols: dict[str, int]) -> None:
        where = f"input {spec.name!r} of graph '{graph.role}'"
        shape = _shape(value)
        dtype = _dtype(value)
        if shape is None or dtype is None:
            raise VideployError(f"{where} must be a numpy array, got {type(value).__name__}")
        if dtype != spec.dtype:
            raise VideployError(f"{where} must be {spec.dtype}, got {dtype}; convert it with .astype(numpy.{spec.dtype})")
        if len(shape) != len(spec.shape):
            raise VideployError(f"{where} must have {len(spec.shape)} dimensions {_fmt(spec.shape)}, got shape {tuple(shape)}")
        for axis, (want, got) in enumerate(zip(spec.shape, shape)):
            if isinstance(want, int):
                if got != want:
                    raise VideployError(f"{where} must have shape {_fmt(spec.shape)}, got {tuple(shape)} (dimension {axis} is {got}, not {want})")
            else:
                if got < 1:
                    raise VideployError(f"{where} has an empty dimension {axis} ({want!r}) in shape {tuple(shape)}")
                seen = symbols.setdefault(want, int(got))
                if seen != got:
                    raise VideployError(f"{where} has {want!r} = {got} (dimension {axis}), but an earlier input has {want!r} = {seen}; inputs must agree")

    def _check_outputs(self, graph: GraphSpec, out: Mapping[str, Any], batch: int, wanted: Sequence[str]) -> None:
        for spec in graph.outputs:
            if spec.name not in out:
                raise VideployError(f"the {self.name} backend returned no output {spec.name!r} for graph '{graph.role}'; the graph file does not match the manifest, re-export the bundle")
            shape = _shape(out[spec.name])
            if shape is None or len(shape) != len(spec.shape) or (spec.shape and spec.shape[0] == BATCH and shape[0] != batch):
                raise VideployError(
                    f"output {spec.name!r} of graph '{graph.role}' has shape {None if shape is None else tuple(shape)}, "
                    f"but the manifest says {_fmt(spec.shape)} with batch {batch}; the graph file does not match the manifest, re-export the bundle"
                )
            if spec.name in wanted and not isinstance(out[spec.name], np.ndarray):
                raise VideployError(f"the {self.name} backend returned {spec.name!r} of graph '{graph.role}' as {type(out[spec.name]).__name__}, not a host array")


def _shape(x: Any) -> tuple[int, ...] | None:
    s = getattr(x, "shape", None)
    return None if s is None else tuple(int(d) for d in s)


def _dtype(x: Any) -> str | None:
    d = getattr(x, "dtype", None)
    if d is None:
        return None
    try:
        return np.dtype(d).name
    except TypeError:
        return str(d).replace("torch.", "")


def _fmt(shape: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"
