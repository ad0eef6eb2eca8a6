"""Loading a checkpoint into a model strictly, with a report for logs and bundle provenance."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from videploy.errors import VideployError
from videploy.models.checkpoint.diagnostics import mismatch_message
from videploy.models.checkpoint.families import family_of, safe_convert
from videploy.models.checkpoint.reading import CheckpointFile, read_checkpoint_file
from videploy.models.checkpoint.unwrapping import unwrap_state_dict


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_checkpoint` loaded, for logs and bundle provenance."""

    source: str  # the file path, or "<state dict>"
    sha256: str | None  # of the file (computed once, while reading it); None for an in-memory state dict
    num_tensors: int  # entries loaded into the model
    family: str | None  # the registry family whose convert/infer was used
    unwrapped: tuple[str, ...] = ()  # containers and prefixes removed, outermost first: "['model']", "prefix 'module.'"
    dropped_keys: tuple[str, ...] = ()  # official keys the family's convert drops (unused heads, ...)
    other_entries: tuple[str, ...] = ()  # top-level entries beside the weights (optimizer, epoch, config, ...)
    missing_keys: tuple[str, ...] = ()  # only with strict=False: model entries the checkpoint lacks
    unexpected_keys: tuple[str, ...] = ()  # only with strict=False: checkpoint entries the model lacks
    mismatched_keys: tuple[str, ...] = ()  # only with strict=False: entries skipped for a different shape


def _as_tensor(key: str, value: Any, label: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise VideployError(f"{label}: entry {key!r} is a numpy array of Python objects, not numbers")
        # (not np.ascontiguousarray: it turns 0-d scalars such as num_batches_tracked into shape (1,))
        if not (arr.flags.c_contiguous and arr.flags.writeable):  # torch.from_numpy warns on read-only memory
            arr = arr.copy(order="C")
        return torch.from_numpy(arr)
    if isinstance(value, (bool, int, float)):
        return torch.tensor(value)
    raise VideployError(f"{label}: entry {key!r} is a {type(value).__name__}, not a tensor or array")


def load_checkpoint(
    model: torch.nn.Module, source: str | os.PathLike[str] | CheckpointFile | Mapping[str, Any], *, strict: bool = True
) -> LoadReport:
    """Load ``source`` into ``model``: a checkpoint file, one already read (:func:`read_checkpoint_file`),
    or a state dict. See :mod:`videploy.models.checkpoint`.

    With ``strict=True`` (default) every model entry must be present with the same shape and the
    checkpoint may hold nothing else (after the family's ``convert``), or a :class:`VideployError`
    explains the mismatch. With ``strict=False`` the matching entries load and the report lists the
    rest. Values are cast to the model's dtypes, as ``load_state_dict`` does. The report's ``sha256``
    is the file's, hashed once while reading it.
    """
    if isinstance(source, (str, os.PathLike)):
        source = read_checkpoint_file(source)
    if isinstance(source, CheckpointFile):
        raw, label, origin, sha = source.content, f"checkpoint {source.path}", str(source.path), source.sha256
    elif isinstance(source, Mapping):
        raw, label, origin, sha = source, "the state dict", "<state dict>", None
    else:
        raise VideployError(f"load_checkpoint: source must be a checkpoint path or a state dict, got {type(source).__name__}")
    sd, unwrapped, others = unwrap_state_dict(raw, label)
    tensors = {k: _as_tensor(k, v, label) for k, v in sd.items()}

    family = family_of(model)
    converted = safe_convert(family, tensors) if family is not None else dict(tensors)
    if converted is None:  # convert could not read it: most likely another family's checkpoint
        converted = dict(tensors)
    kept_ids = {id(v) for v in converted.values()}
    dropped = tuple(k for k, v in tensors.items() if k not in converted and id(v) not in kept_ids)

    expected = model.state_dict()
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    wrong = [k for k in expected if k in converted and tuple(converted[k].shape) != tuple(expected[k].shape)]
    if strict and (missing or unexpected or wrong):
        raise VideployError(mismatch_message(model, family, label, tensors, converted, expected, missing, unexpected, wrong))

    to_load = {k: v for k, v in converted.items() if k in expected and k not in wrong}
    try:
        model.load_state_dict(to_load, strict=strict)
    except RuntimeError as exc:  # dtype casts that copy_ refuses (complex -> float, ...)
        first = str(exc).strip().splitlines()
        raise VideployError(f"{label} does not load into {type(model).__name__}: {' '.join(first[:3])[:400]}") from None
    return LoadReport(
        source=origin,
        sha256=sha,
        num_tensors=len(to_load),
        family=family.name if family is not None else None,
        unwrapped=unwrapped,
        dropped_keys=dropped,
        other_entries=others,
        missing_keys=tuple(missing),
        unexpected_keys=tuple(unexpected),
        mismatched_keys=tuple(wrong),
    )
