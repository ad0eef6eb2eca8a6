"""Training checkpoints (resumable) and shipped weights (safetensors).

* A *training checkpoint* is ``torch.save`` of plain containers only --
  ``{"state_dict", "optimizer", "scheduler", "progress", "config"}`` with tensors, numbers and
  strings -- so ``torch.load(weights_only=True)`` reads it and
  :func:`videploy.models.load_checkpoint` finds the weights under ``state_dict``.
* *Weights* are a safetensors file of the model's state dict (no code, no pickle), with the model
  name and its configuration in the file's metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from videploy import jsonsafe
from videploy.errors import VideployError
from videploy.optional import require


def save_training_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, progress: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Write atomically (a temporary file renamed into place): an interrupted save keeps the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "progress": dict(progress),
        "config": json.loads(jsonsafe.dumps(dict(config), default=str)),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise VideployError(f"no training checkpoint at {path}; run without --resume to start from scratch")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not {"state_dict", "optimizer", "progress"} <= set(state):
        raise VideployError(f"{path} is not a videploy training checkpoint (it lacks state_dict / optimizer / progress)")
    return state


def save_weights(path: str | Path, model: torch.nn.Module, metadata: Mapping[str, str] | None = None) -> Path:
    """The model's state dict as safetensors (float32, contiguous), with string ``metadata``."""
    st = require("safetensors.torch", "saving weights as safetensors")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    st.save_file(tensors, str(path), metadata={str(k): str(v) for k, v in (metadata or {}).items()})
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a safetensors file."""
    st = require("safetensors", "reading safetensors weights")
    path = Path(path)
    if not path.is_file():
        raise VideployError(f"no weights file at {path}")
    with st.safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


def load_weights(model: torch.nn.Module, path: str | Path) -> dict[str, str]:
    """Load a safetensors file strictly into ``model`` (through ``load_checkpoint``); returns its metadata."""
    from videploy.models import load_checkpoint

    tensors, meta = read_weights(path)
    load_checkpoint(model, tensors)
    return meta
