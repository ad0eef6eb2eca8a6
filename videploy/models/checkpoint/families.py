"""The registry family a model belongs to, and its ``convert`` / ``infer`` called on any checkpoint."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from videploy.models import registry

# what a family's convert / infer may raise on a checkpoint of another family or configuration
_CONVERT_ERRORS = (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError)


def family_of(model: torch.nn.Module) -> registry.Family | None:
    """The registry family a model belongs to: by its ``family`` name (class attribute), else the
    family whose ``build`` is the model's class (components registered with the class itself)."""
    name = getattr(type(model), "family", None) or getattr(model, "family", None)
    entry = registry.REGISTRY.get(name) if isinstance(name, str) else None
    if entry is not None and entry.is_family:
        return entry.family
    for entry in registry.REGISTRY.values():
        if entry.is_family and entry.family.build is type(model):
            return entry.family
    return None


def safe_convert(family: registry.Family, sd: Mapping[str, Any]) -> dict[str, Any] | None:
    """``family.convert(sd)``, or None when it cannot read ``sd``."""
    try:
        return dict(family.convert(sd))
    except _CONVERT_ERRORS:
        return None


def safe_infer(family: registry.Family, sd: Mapping[str, Any]) -> dict[str, Any]:
    """``family.infer(sd)``, or ``{}`` when it cannot read ``sd``."""
    try:
        out = family.infer(sd)
    except _CONVERT_ERRORS:
        return {}
    return dict(out) if isinstance(out, Mapping) else {}
