"""Explaining why a checkpoint does not fit a model: which keys, which parts, and which model it does fit.

The message lists the missing / unexpected / wrongly shaped keys, groups them by the family's
parts, and says which configuration of the model's family the checkpoint fits (from the family's
``infer``, or a zoo model whose shapes match exactly) or which other family it belongs to.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from videploy.models import registry
from videploy.models.checkpoint.families import safe_convert, safe_infer

_SHOW = 5  # keys listed per kind in a mismatch message


def _norm(v: Any) -> Any:
    """Comparable form of a kwarg value (tuples and lists alike, numpy / tensor scalars as numbers)."""
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, Mapping):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (np.generic, torch.Tensor)) and getattr(v, "ndim", 0) == 0:
        return v.item()
    return v


def _differs(inferred: Any, current: Any) -> bool:
    """Does an inferred kwarg contradict the model's? Nested dicts compare only the inferred fields."""
    if isinstance(inferred, Mapping) and isinstance(current, Mapping):
        return any(k not in current or _differs(v, current[k]) for k, v in inferred.items())
    return _norm(inferred) != _norm(current)


def _fmt(v: Any) -> str:
    v = _norm(v)
    if isinstance(v, tuple):
        return str(list(v))
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _kw(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in d.items())


def _listing(keys: list[str], what: str) -> str:
    shown = ", ".join(keys[:_SHOW]) + (f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")
    return f"\n  {what} ({len(keys)}): {shown}"


def _part_of(key: str, parts: Mapping[str, str]) -> str:
    def hit(prefix: str) -> bool:
        return key.startswith(prefix) if prefix.endswith(".") else key == prefix or key.startswith(prefix + ".")

    best = max((p for p in parts if hit(p)), key=len, default=None)
    return parts[best] if best is not None else "other"


def _by_part(parts: Mapping[str, str], missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    if not parts:
        return ""
    counts: dict[str, Counter[str]] = {}
    for kind, keys in (("missing", missing), ("unexpected", unexpected), ("with a different shape", wrong)):
        for k in keys:
            counts.setdefault(_part_of(k, parts), Counter())[kind] += 1
    items = [f"{part}: " + ", ".join(f"{n} key{'s' if n != 1 else ''} {kind}" for kind, n in c.items()) for part, c in counts.items()]
    return "\n  by part: " + "; ".join(items)


def _pattern(key: str) -> str:
    """A key with its indices replaced (``layers.#.blocks.#.mlp.fc1.weight``): the family's structure."""
    return _INDEX.sub(".#", key)


_INDEX = re.compile(r"\.\d+(?=\.|$)")


def _structure_similarity(keys: Iterable[str], patterns: set[str]) -> float:
    mine = {_pattern(k) for k in keys}
    return len(mine & patterns) / len(mine | patterns) if mine and patterns else 0.0


def _meta_state_shapes(name: str, **kwargs: Any) -> dict[str, tuple[int, ...]] | None:
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation arithmetic
            m = registry.create(name, **kwargs)
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}
    except Exception:  # noqa: BLE001 - a hint must never hide the real error
        return None


@functools.lru_cache(maxsize=None)
def _family_patterns(family_name: str) -> frozenset[str]:
    """Key patterns of a family: over its zoo models (or its default build, for components)."""
    names = [e.name for e in registry.REGISTRY.values() if e.family.name == family_name and not e.is_family] or [family_name]
    out: set[str] = set()
    for name in names:
        shapes = _meta_state_shapes(name)
        if shapes:
            out.update(_pattern(k) for k in shapes)
    return frozenset(out)


@functools.lru_cache(maxsize=None)
def _zoo_shapes(name: str) -> dict[str, tuple[int, ...]] | None:
    return _meta_state_shapes(name)


def _family_label(name: str) -> str:
    return {"video_focalnet": "Video-FocalNet", "stam": "STAM", "adafocusv3": "AdaFocusV3"}.get(name, name)


def _zoo_hint(family: registry.Family, inferred: Mapping[str, Any]) -> str | None:
    """``create("<zoo name>"[, num_classes=N])`` for the zoo entry of ``family`` that agrees with
    every inferred kwarg (num_classes aside), or None."""
    for entry in (e for e in registry.REGISTRY.values() if e.family is family and not e.is_family):
        _, kwargs = registry.resolve_kwargs(entry.name, {})
        keys = [k for k in inferred if k != "num_classes" and k in kwargs]
        if keys and not any(_differs(inferred[k], kwargs[k]) for k in keys):
            extra = ""
            if "num_classes" in inferred and _differs(inferred["num_classes"], kwargs.get("num_classes")):
                extra = f", num_classes={_fmt(inferred['num_classes'])}"
            return f'videploy.models.create("{entry.name}"{extra})'
    return None


def _config_hint(model: torch.nn.Module, family: registry.Family | None, tensors: Mapping[str, torch.Tensor]) -> str:
    """Which configuration of the model's own family the checkpoint fits (family ``infer`` vs the model)."""
    if family is None or not callable(getattr(model, "official_kwargs", None)):
        return ""
    inferred = safe_infer(family, tensors)
    try:
        current = model.official_kwargs()
    except (TypeError, ValueError, AttributeError):
        return ""
    diffs = {k: v for k, v in inferred.items() if k in current and _differs(v, current[k])}
    if not diffs:
        return ""
    if set(diffs) == {"num_classes"}:
        n = _fmt(diffs["num_classes"])
        return f"\n  the checkpoint has num_classes={n}, the model {_fmt(current['num_classes'])}: create the model with num_classes={n}."
    zoo = _zoo_hint(family, inferred)
    fix = f"it fits {zoo}" if zoo else f"create the model with {_kw(diffs)}"
    return f"\n  the checkpoint has {_kw(diffs)}; the model {_kw({k: current[k] for k in diffs})}: {fix}."


def _other_family_hint(family: registry.Family | None, tensors: Mapping[str, torch.Tensor], own: float) -> str:
    """'this looks like a STAM checkpoint' when another family's key structure fits clearly better."""
    best: tuple[float, registry.Family] | None = None
    for name in registry.families(include_components=True):
        other = registry.REGISTRY[name].family
        if other is family:
            continue
        keys = safe_convert(other, tensors) or tensors
        score = _structure_similarity(keys, set(_family_patterns(name)))
        if best is None or score > best[0]:
            best = (score, other)
    if best is None or best[0] < 0.6 or best[0] < own + 0.2:
        return ""
    other = best[1]
    inferred = {k: v for k, v in safe_infer(other, tensors).items() if v is not None}
    zoo = _zoo_hint(other, inferred)
    if zoo:
        where = zoo
    elif inferred:
        where = f'a {other.name!r} model with {_kw(inferred)} (videploy.models.create("{other.name}", ...))'
    else:
        where = f'a {other.name!r} model (videploy.models.create("{other.name}", ...))'
    mine = f", not a {_family_label(family.name)} one" if family is not None else ""
    return f"\n  this looks like a {_family_label(other.name)} checkpoint{mine}: load it into {where}."


def mismatch_message(
    model: torch.nn.Module,
    family: registry.Family | None,
    label: str,
    tensors: Mapping[str, torch.Tensor],
    converted: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    wrong: list[str],
) -> str:
    what = type(model).__name__ + (f" (family {family.name})" if family else "")
    counts = [
        f"{n} key{'s' if n != 1 else ''} {kind}"
        for n, kind in ((len(missing), "missing"), (len(unexpected), "unexpected"), (len(wrong), "with a different shape"))
        if n
    ]
    msg = f"{label} does not fit {what}: {', '.join(counts)}."
    if missing:
        msg += _listing(missing, "missing")
    if unexpected:
        msg += _listing(unexpected, "unexpected")
    if wrong:
        msg += _listing([f"{k} checkpoint {list(converted[k].shape)} vs model {list(expected[k].shape)}" for k in wrong], "different shape")
    msg += _by_part(family.parts if family else {}, missing, unexpected, wrong)
    own = _structure_similarity(converted, {_pattern(k) for k in expected})
    # another family only when the key structure is clearly not the model's own (keeps this fast)
    hint = _other_family_hint(family, tensors, own) if own < 0.8 else ""
    if not hint:
        hint = _config_hint(model, family, tensors)
    if not hint and family is not None:
        # infer said nothing decisive: a zoo model whose keys and shapes fit exactly?
        shapes = {k: tuple(v.shape) for k, v in converted.items()}
        for entry in (e for e in registry.REGISTRY.values() if e.family is family and not e.is_family):
            if _zoo_shapes(entry.name) == shapes:
                hint = f'\n  it fits the zoo model {entry.name}: videploy.models.create("{entry.name}").'
                break
    return msg + hint
