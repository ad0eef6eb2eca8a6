"""The :class:`Bundle` value: a bundle directory and its validated manifest, opened once.

Everything downstream of export (backends, the recognizer, the benchmark, the engine builder)
takes a ``Bundle`` instead of a ``(bundle_dir, manifest)`` pair, so the manifest is read and
checked exactly once and the rules that span several fields live here:

* every file the manifest names resolves *inside* the bundle (:meth:`Bundle.path`);
* the batch range: :meth:`Bundle.check_batch` and :meth:`Bundle.batch_size`; a fixed minimum
  batch is met by padding (:meth:`Bundle.padding`);
* AdaFocusV3: the frames the preprocessing samples equal the chain's ``num_segments``, and the
  local encoder's state size comes from its graph (:attr:`Bundle.state_size`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Union

from videploy.bundle import manifest as manifest_io
from videploy.bundle.manifest import EarlyExit, GraphSpec, Manifest
from videploy.errors import VideployError

BundleLike = Union["Bundle", str, Path]
# Batch-dynamic graphs take any batch; beyond this a request is a typo that would allocate too much.
MAX_DYNAMIC_BATCH = 1024


@dataclass(frozen=True)
class Bundle:
    """A bundle directory with its manifest. Make one with :meth:`open` (or :meth:`of`)."""

    root: Path
    manifest: Manifest

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, check_files: bool = True) -> "Bundle":
        """Read and validate ``path/manifest.json`` (untrusted input: every field, and -- with
        ``check_files`` -- every file it names, inside the bundle, and the ONNX graphs' real inputs and
        outputs against it). A bundle an interrupted ``export --overwrite`` left missing is restored first."""
        root = Path(path)
        bundle = cls(root, manifest_io.read_manifest(root, check_files=check_files, check_graphs=check_files))
        bundle.check_consistency()
        return bundle

    @classmethod
    def of(cls, value: BundleLike) -> "Bundle":
        """``value`` itself if it is a Bundle, else the bundle opened at that path."""
        return value if isinstance(value, Bundle) else cls.open(value)

    def with_manifest(self, manifest: Manifest) -> "Bundle":
        """The same directory with another manifest (e.g. after engines were added)."""
        return replace(self, manifest=manifest)

    # --- paths ------------------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        """The file ``rel`` (bundle-relative, as the manifest writes it); refuses paths that leave the bundle."""
        target = (self.root / rel).resolve()
        root = self.root.resolve()
        if root not in target.parents:
            raise VideployError(f"bundle {str(self.root)!r} refers to {rel!r}, which resolves outside the bundle; refusing to read it")
        return target

    def graph_file(self, role: str, precision: str | None = None) -> Path:
        """The ONNX file of graph ``role``: the exported one, or its ``precision`` variant."""
        graph = self.graph(role)
        if precision is None:
            return self.path(graph.file)
        if precision not in graph.variants:
            raise VideployError(
                f"bundle has no {precision} ONNX variant of graph '{role}' (it has {sorted(graph.variants) or 'none'}); "
                "run the exported graph (no --precision), or make that variant first"
            )
        return self.path(graph.variants[precision])

    # --- shortcuts --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.model_name

    @property
    def early_exit(self) -> EarlyExit | None:
        return self.manifest.early_exit

    @property
    def adaptive(self) -> bool:
        return self.manifest.early_exit is not None

    def graph(self, role: str) -> GraphSpec:
        return self.manifest.graph(role)

    @property
    def state_size(self) -> int:
        """AdaFocusV3's local-encoder state width: the graph's static size, else the manifest's."""
        ee = self._require_adaptive()
        last = self.graph("local").input("local_state").shape[-1]
        return last if isinstance(last, int) else ee.state_size

    # --- cross-field rules ------------------------------------------------------------------------
    def check_consistency(self) -> None:
        m = self.manifest
        ee = m.early_exit
        if ee is not None and m.preprocessing.num_frames != ee.num_segments:
            raise VideployError(
                f"bundle manifest samples {m.preprocessing.num_frames} frames but its early_exit section expects "
                f"num_segments={ee.num_segments}; the bundle is inconsistent, re-export it"
            )

    def check_batch(self, batch: int, what: str, dynamic: bool = False) -> None:
        """``batch`` rows must fit what the graphs accept: the bundle's range, or -- on a backend that
        runs the batch-dynamic ONNX graphs (``dynamic``) -- up to :data:`MAX_DYNAMIC_BATCH`."""
        top = MAX_DYNAMIC_BATCH if dynamic else self.manifest.batch.max
        if not 1 <= batch <= top:
            rng = self.manifest.batch
            accepts = f"batches of 1 to {top}" if dynamic else f"batches of {rng.min} to {rng.max}"
            raise VideployError(f"{what} got a batch of {batch}, but the bundle accepts {accepts}; split the input (or re-export with a larger --max-batch)")

    def batch_size(self, requested: int | None, dynamic: bool = False) -> int:
        """Rows per backend call: ``requested``, else the bundle's maximum. Backends whose graphs are
        batch-dynamic (``dynamic``: onnxruntime, torch) take any size up to :data:`MAX_DYNAMIC_BATCH`;
        TensorRT engines stop at the profile maximum the bundle records."""
        rng = self.manifest.batch
        bs = rng.max if requested is None else int(requested)
        top = MAX_DYNAMIC_BATCH if dynamic else rng.max
        if not 1 <= bs <= top:
            raise VideployError(f"batch size must be between 1 and the bundle's maximum {top}, got {bs}; use --batch-size {top} or less")
        return bs

    def padding(self, batch: int) -> int:
        """Rows to add so a call of ``batch`` rows meets a fixed minimum batch (0 for dynamic bundles)."""
        return max(0, self.manifest.batch.min - batch)

    def _require_adaptive(self) -> EarlyExit:
        if self.manifest.early_exit is None:
            raise VideployError(f"{self.name!r} is not an adaptive (AdaFocusV3) bundle; it has no early_exit section")
        return self.manifest.early_exit
