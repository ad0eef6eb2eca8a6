"""What export and the rest of the pipeline need from a model, stated once.

* :class:`GraphModule` — an ``nn.Module`` that becomes one ONNX graph: tensor-only inputs and
  outputs with fixed names, batch as dimension 0 of every input and output, example inputs.
* :class:`VideoModel` — a whole deployable model (Video-FocalNet, STAM, AdaFocusV3): its family,
  its official kwargs, the official evaluation preprocessing, and the graphs it deploys as
  (itself for single-graph families; glance / policy / local for AdaFocusV3).
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode  # FLOP counting runs under a dispatch mode

from videploy.bundle.manifest import EarlyExit, Preprocessing


def exporting() -> bool:
    """True while a module is traced for export (torch.export / dynamo / TorchScript) or run under a
    dispatch mode (FLOP counting). Modules use it to pick the op pattern deployment runtimes run
    fastest, keeping the eager path bit-for-bit the official computation."""
    compiler = getattr(torch, "compiler", None)
    for name in ("is_exporting", "is_compiling"):
        fn = getattr(compiler, name, None)
        if fn is not None and fn():
            return True
    return bool(torch.jit.is_tracing() or torch.jit.is_scripting() or _get_current_dispatch_mode() is not None)


class GraphModule(nn.Module):
    """A module exported as one graph. Subclasses set the names and implement ``example_inputs``."""

    input_names: ClassVar[tuple[str, ...]] = ()
    output_names: ClassVar[tuple[str, ...]] = ()

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """Inputs of the right shapes/dtypes (batch ``batch_size``) for tracing and verification."""
        raise NotImplementedError


class VideoModel(GraphModule):
    """A whole video model. ``config`` is a frozen dataclass whose fields are the official kwargs."""

    family: ClassVar[str] = ""
    config: Any

    @property
    def num_classes(self) -> int:
        return int(self.config.num_classes)

    def official_kwargs(self) -> dict[str, Any]:
        """The config as JSON-able official constructor kwargs (what the manifest records)."""
        return _jsonable(asdict(self.config) if is_dataclass(self.config) else dict(self.config))

    def preprocessing(self) -> Preprocessing:
        """The official evaluation's frame sampling and normalisation for this configuration."""
        raise NotImplementedError

    def deploy_graphs(self) -> dict[str, GraphModule]:
        """role -> module, in execution order. Single-graph families return ``{"main": self}``."""
        return {"main": self}

    def early_exit(self) -> EarlyExit | None:
        """Exit structure for adaptive models (AdaFocusV3); ``None`` for the others."""
        return None


def _jsonable(x: Any) -> Any:
    if is_dataclass(x) and not isinstance(x, type):
        return _jsonable(asdict(x))
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
