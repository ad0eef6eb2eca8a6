"""Finding the state dict inside a loaded checkpoint: containers, pickled modules, wrapper prefixes."""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

import numpy as np
import torch

from videploy.errors import VideployError
from videploy.models.checkpoint.safe_globals import unresolved_class

# Containers official and common training scripts put the weights in, in the order we look.
CONTAINER_KEYS = ("model", "state_dict", "model_state", "model_state_dict", "module")
# Prefixes wrappers add to every key: DistributedDataParallel / DataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_COMPILED_SEGMENT = "._orig_mod."  # a torch.compile'd submodule inside an otherwise plain model

V = TypeVar("V")


def strip_wrapper_prefixes(state_dict: Mapping[str, V]) -> tuple[dict[str, V], tuple[str, ...]]:
    """``(state_dict, stripped)``: the keys without the prefixes wrappers add, as a new dict.

    ``module.`` (DistributedDataParallel / DataParallel) and ``_orig_mod.`` (``torch.compile``) are
    removed, repeatedly and in any order, when *every* key carries them; ``._orig_mod.`` segments of a
    compiled submodule are removed from the keys that have one. ``stripped`` names what was removed.
    """
    sd = dict(state_dict)
    steps: list[str] = []
    stripped = True
    while stripped and sd:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                steps.append(f"prefix {prefix!r}")
                stripped = True
    if any(_COMPILED_SEGMENT in k for k in sd):
        sd = {k.replace(_COMPILED_SEGMENT, "."): v for k, v in sd.items()}
        steps.append(f"{_COMPILED_SEGMENT!r} segments")
    return sd, tuple(steps)


def _tensor_like(v: Any) -> bool:
    return isinstance(v, (torch.Tensor, np.ndarray, np.generic))


def _is_state_dict(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(isinstance(k, str) for k in obj) and all(_tensor_like(v) for v in obj.values())


def _module_state_dict(obj: Any) -> dict[str, Any] | None:
    """The state dict of a whole pickled ``nn.Module`` (``torch.save(model)``), read from its stand-in."""
    if unresolved_class(obj) is None or "_parameters" not in vars(obj):
        return None
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        st = vars(node)
        for k, v in (st.get("_parameters") or {}).items():
            if v is not None:
                out[prefix + k] = v
        skip = st.get("_non_persistent_buffers_set") or set()
        for k, v in (st.get("_buffers") or {}).items():
            if v is not None and k not in skip:
                out[prefix + k] = v
        for k, child in (st.get("_modules") or {}).items():
            if unresolved_class(child) is not None:
                walk(child, f"{prefix}{k}.")

    walk(obj, "")
    return out or None


def _holds_weights(obj: Any, depth: int) -> bool:
    """A state dict, a pickled module, or (``depth`` levels down) a container of one."""
    if _is_state_dict(obj) or _module_state_dict(obj) is not None:
        return True
    if depth <= 0:
        return False
    entries = obj if isinstance(obj, Mapping) else {}
    return any(_holds_weights(entries[k], depth - 1) for k in CONTAINER_KEYS if k in entries)


def _describe(obj: Any) -> str:
    if unresolved_class(obj) is not None:
        return f"an object of class {unresolved_class(obj)}"
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {list(obj.shape)}"
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:8]]
        return f"a dict with entries {keys}{' ...' if len(obj) > 8 else ''}" if obj else "an empty dict"
    return f"a {type(obj).__name__}"


def unwrap_state_dict(obj: Any, label: str = "the checkpoint") -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """``(state_dict, unwrapped, other_entries)``: the weights inside a loaded checkpoint object.

    Looks into ``model`` / ``state_dict`` / ``model_state`` / ``model_state_dict`` / ``module`` (at
    most two levels, e.g. AdaFocus' ``{"epoch", "best_acc1", "state_dict", "optimizer"}``), else into
    the one entry that is a state dict; reads a whole pickled ``nn.Module``; strips wrapper prefixes
    (:func:`strip_wrapper_prefixes`).
    """
    steps: list[str] = []
    others: tuple[str, ...] = ()
    top = obj
    for _level in range(3):
        module_sd = _module_state_dict(obj)
        if module_sd is not None:
            steps.append(f"module object {unresolved_class(obj)}")
            obj = module_sd
        if _is_state_dict(obj):
            break
        if not isinstance(obj, Mapping) or not obj:
            break
        entries = obj
        key = next((k for k in CONTAINER_KEYS if k in entries and _holds_weights(entries[k], 2)), None)
        if key is None:
            nested = [k for k, v in entries.items() if _holds_weights(v, 0)]
            if len(nested) != 1:
                break
            key = nested[0]
        if not steps:
            others = tuple(str(k) for k in entries if k != key)
        steps.append(f"[{key!r}]")
        obj = entries[key]
    if not _is_state_dict(obj):
        inner = f" (inside {''.join(s for s in steps if s.startswith('['))}: {_describe(obj)})" if steps else ""
        raise VideployError(
            f"{label} holds {_describe(top)}{inner}, not a state dict (a mapping of parameter names to tensors). "
            f"videploy looks for the weights under {', '.join(repr(k) for k in CONTAINER_KEYS)}; "
            "save them with torch.save(model.state_dict(), path) or pass the state dict itself."
        )
    sd, stripped = strip_wrapper_prefixes(obj)
    return sd, (*steps, *stripped), others
