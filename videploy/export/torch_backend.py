"""The PyTorch reference backend: runs the model's ``deploy_graphs()`` modules behind the runtime's
:class:`~videploy.runtime.backends.base.Backend` interface, for parity tests and benchmarks.

Options for a fair PyTorch baseline (what a PyTorch user would run): it always runs in eval mode
under ``torch.inference_mode``; ``channels_last=True`` converts the weights to NHWC and
``compile=True`` wraps every graph module in ``torch.compile`` (the benchmark reports which ran).

It lives outside ``videploy.runtime`` because it needs torch and the model code, which the runtime
never imports; the backend registry names it by a lazy dotted path, so ``backend="torch"`` works
everywhere and torch is imported only when it is asked for:

    from videploy import runtime
    rec = runtime.load("bundle/", backend="torch", model=my_model)   # or checkpoint="ckpt.pth"

The modules come from ``model=`` (a :class:`~videploy.models.base.VideoModel`), else they are rebuilt
from the manifest: ``checkpoint=`` (its SHA-256 must match the manifest's ``weights``), or — for a
bundle exported without weights — the same seeded random initialisation export uses
(``torch.manual_seed(0)`` then ``create(family, **config)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Mapping

import numpy as np

from videploy.bundle.bundle import BundleLike
from videploy.bundle.manifest import GraphSpec
from videploy.errors import VideployError
from videploy.optional import require
from videploy.runtime.backends.base import Backend

if TYPE_CHECKING:  # pragma: no cover
    from videploy.models.base import VideoModel

# Seed export uses for a model without a checkpoint (videploy.export.api.build_model).
RANDOM_INIT_SEED = 0


class TorchBackend(Backend):
    name = "torch"
    devices = ("cpu", "cuda")
    default_device = "cpu"
    options = ("model", "checkpoint", "threads", "channels_last", "compile")
    reference = True

    def __init__(
        self,
        bundle: BundleLike,
        device: str | None = None,
        precision: str | None = None,
        model: "VideoModel | None" = None,
        checkpoint: str | Path | None = None,
        threads: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ):
        self.channels_last = bool(channels_last)
        self.compiled = bool(compile)
        self._model = model
        self._checkpoint = checkpoint
        self._threads = threads
        self._modules: dict[str, Any] = {}
        super().__init__(bundle, device=device, precision=precision)

    @classmethod
    def device_for(cls, requested: str | None) -> str:
        # a GPU run of the other backends (cuda, or onnxruntime's tensorrt provider) compares with torch on cuda
        return "cuda" if requested in ("cuda", "tensorrt") else "cpu"

    @property
    def threads(self) -> int | None:
        """torch's intra-op threads (process-wide: ``threads=`` sets them for every torch user)."""
        return int(self.torch.get_num_threads())

    def _activate(self) -> None:
        self.torch = require("torch", "the PyTorch reference backend")
        if self._threads is not None:
            if int(self._threads) < 1:
                raise VideployError(f"threads must be >= 1, got {self._threads}")
            self.torch.set_num_threads(int(self._threads))
        if self.device == "cuda" and not self.torch.cuda.is_available():
            raise VideployError("the torch backend was asked for --device cuda, but torch sees no CUDA GPU; use --device cpu or a CUDA build of torch")
        if self.precision not in (None, "fp32", "fp16"):
            raise VideployError(f"the torch backend runs fp32 or fp16, not {self.precision!r}")
        model = self._model if self._model is not None else self._rebuild()
        if getattr(model, "family", None) != self.manifest.family:
            raise VideployError(f"the model given to the torch backend is a {getattr(model, 'family', type(model).__name__)!r} model, but the bundle is {self.manifest.family!r}")
        model = model.eval().to(self.device)
        if self.precision == "fp16":
            model = model.half()
        if self.channels_last:
            # what a PyTorch user tries for conv nets on CPU: NHWC weights (activations follow). Only
            # 4-D / 5-D tensors have a channels-last layout; Module.to(memory_format=...) refuses 5-D
            torch = self.torch
            with torch.no_grad():
                for t in [*model.parameters(), *model.buffers()]:
                    if t.dim() == 4:
                        t.data = t.data.contiguous(memory_format=torch.channels_last)
                    elif t.dim() == 5:
                        t.data = t.data.contiguous(memory_format=torch.channels_last_3d)
        self._graphs = model.deploy_graphs()
        for role, g in self._graphs.items():
            g.eval()
            if self.compiled:
                compiled = self.torch.compile(g, dynamic=True)
                # keep the names the backend reads; torch.compile wraps the module
                compiled.input_names, compiled.output_names = g.input_names, g.output_names
                self._graphs[role] = compiled

    def _rebuild(self) -> "VideoModel":
        from videploy.models import create, load_checkpoint

        m = self.manifest
        if m.weights is None:
            self.torch.manual_seed(RANDOM_INIT_SEED)
            return create(m.family, **dict(m.config))
        if self._checkpoint is None:
            raise VideployError(
                f"bundle {m.model_name!r} was exported from checkpoint {m.weights.get('file')!r}; give the torch backend "
                "that checkpoint (checkpoint=PATH) or the model itself (model=...)"
            )
        from videploy.models.checkpoint import ChecksumMismatch, read_checkpoint_file

        path = Path(self._checkpoint)
        try:
            checkpoint = read_checkpoint_file(path, expected_sha256=m.weights.get("sha256") or None)  # hashed once, before reading
        except ChecksumMismatch:
            raise VideployError(f"checkpoint {str(path)!r} is not the one the bundle was exported from (SHA-256 differs); pass {m.weights.get('file')!r}") from None
        model = create(m.family, **dict(m.config))
        load_checkpoint(model, checkpoint)
        return model

    def _load(self, graph: GraphSpec) -> None:
        module = self._graphs.get(graph.role)
        if module is None:
            raise VideployError(f"the model has no deploy graph {graph.role!r} (it has {list(self._graphs)}); it does not match the bundle")
        names = tuple(getattr(module, "input_names", ()))
        if names != tuple(t.name for t in graph.inputs):
            raise VideployError(f"deploy graph {graph.role!r} takes {list(names)}, the manifest lists {[t.name for t in graph.inputs]}")
        self._modules[graph.role] = module

    def _run_impl(self, graph: GraphSpec, inputs: Mapping[str, Any], fetch: Collection[str]) -> dict[str, Any]:
        torch = self.torch
        module = self._modules[graph.role]
        args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])).to(self.device) for t in graph.inputs]
        with torch.inference_mode():
            outs = module(*args)
        if isinstance(outs, torch.Tensor):
            outs = (outs,)
        names = tuple(getattr(module, "output_names", ())) or tuple(t.name for t in graph.outputs)
        result = {name: t.detach().cpu().numpy() for name, t in zip(names, outs)}
        return result
