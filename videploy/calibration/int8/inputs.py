"""What each graph really receives: calibration inputs recorded from the FP32 chain, cached on disk.

Single-graph families: the ``main`` graph's input is the clip itself. AdaFocusV3 is
*pipeline-aware*: the clips run through the runtime's one chain on the FP32 graphs (onnxruntime,
every exit forced so every local step runs) while :meth:`Backend.recording` keeps every call's
inputs, so the glance graph is calibrated on its glance frames, the policy graph on the glance's
real feature maps and the local encoder on the crops the policy chose, with the states the earlier
steps produced -- not on random crops.

:class:`GraphInputs` holds, per graph role, each input's rows concatenated along the batch axis;
:meth:`GraphInputs.batches` cuts them into calls again. :class:`InputCache` stores the inputs
and the held-out clips as one ``.npz`` per key (the graphs' hashes and the data's hash), with a
few calibration clips for the chain analysis (:mod:`.chain`), so trying
another calibration method, or another sensitivity setting, does not decode the videos again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from videploy import jsonsafe
from videploy.bundle.bundle import Bundle
from videploy.calibration.int8.videos import Clip
from videploy.errors import VideployError

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 << 30  # recorded inputs kept across runs (a few full-size video sets)


@dataclass(frozen=True)
class GraphInputs:
    """Per role, input name -> all recorded rows (batch axis first)."""

    arrays: Mapping[str, Mapping[str, np.ndarray]]

    def rows(self, role: str) -> int:
        named = self.arrays.get(role) or {}
        return int(next(iter(named.values())).shape[0]) if named else 0

    def batches(self, role: str, batch_size: int, limit: int | None = None) -> list[dict[str, np.ndarray]]:
        """The inputs of ``role`` as feeds of at most ``batch_size`` rows (the first ``limit`` rows if given)."""
        named = self.arrays.get(role)
        if not named:
            raise VideployError(f"no calibration inputs were recorded for graph '{role}'")
        n = self.rows(role) if limit is None else min(limit, self.rows(role))
        return [{k: np.ascontiguousarray(v[i : i + batch_size]) for k, v in named.items()} for i in range(0, n, batch_size)]


def record_inputs(bundle: Bundle, clips: Sequence[Clip], batch_size: int, progress: bool = False) -> GraphInputs:
    """Run ``clips`` through the FP32 graphs as the runtime does and keep what every graph received."""
    from tqdm import tqdm

    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from videploy.runtime.recognizer import Recognizer

    bs = bundle.batch_size(batch_size)
    collected: dict[str, dict[str, list[np.ndarray]]] = {}
    if not bundle.adaptive:
        frames = [c.frames for c in clips]
        dtype = bundle.graph("main").input("video").dtype
        collected["main"] = {"video": [np.stack(frames).astype(dtype, copy=False)]}
    else:
        backend = OnnxRuntimeBackend(bundle)
        try:
            rec = Recognizer(bundle, backend=backend)
            forced = [-math.inf] * (bundle.early_exit.num_steps + 1)
            for i in tqdm(range(0, len(clips), bs), desc="recording the FP32 chain", unit="batch", disable=not progress):
                group = [c.frames for c in clips[i : i + bs]]
                with backend.recording() as calls:
                    rec.adaptive.run(group, thresholds=forced, batch_size=bs)
                for call in calls:
                    slot = collected.setdefault(call.role, {})
                    for name, value in call.inputs.items():
                        slot.setdefault(name, []).append(np.asarray(value))
        finally:
            backend.close()
    return GraphInputs({role: {k: np.concatenate(v) for k, v in named.items()} for role, named in collected.items()})


def graph_digest(bundle: Bundle, role: str) -> str:
    from videploy.calibration.int8.videos import file_digest

    return file_digest(bundle.graph_file(role))


CACHE_FORMAT = 2  # 2: calibration clips for the chain analysis are stored too


def inputs_key(bundle: Bundle, data_key: str, chain_clips: int = 0) -> str:
    """The cache key of a bundle's recorded inputs: every FP32 graph's hash plus the data's hash."""
    h = hashlib.sha256(f"{CACHE_FORMAT}:{chain_clips}:{data_key}".encode())
    for g in bundle.manifest.graphs:
        h.update(f"{g.role}:{graph_digest(bundle, g.role)}".encode())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class CachedData:
    inputs: GraphInputs
    holdout: tuple[Clip, ...]
    calibration_clips: int
    skipped: tuple[str, ...]
    chain: tuple[Clip, ...] = ()  # a few calibration clips the chain analysis runs whole (AdaFocusV3)


class InputCache:
    """``root/inputs/<key>.npz``: recorded graph inputs plus held-out clips (written atomically).

    Each entry is ~100 MB for a full-size model, and every new video set or bundle adds one, so
    the folder is kept under ``max_bytes``: after a store, the least recently used entries go
    (a load counts as a use). The entry just stored always stays."""

    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)

    def path(self, key: str) -> Path:
        return self.root / "inputs" / f"{key}.npz"

    def load(self, key: str) -> CachedData | None:
        path = self.path(key)
        if not path.is_file():
            return None
        os.utime(path)  # recently used: the last to be pruned
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            arrays: dict[str, dict[str, np.ndarray]] = {}
            for name in meta["inputs"]:
                role, inp = name.split("/", 1)
                arrays.setdefault(role, {})[inp] = z[f"in/{name}"]
            hold = tuple(Clip(src, int(idx), z[f"holdout/{i}"]) for i, (src, idx) in enumerate(meta["holdout"]))
            chain = tuple(Clip(src, int(idx), z[f"chain/{i}"]) for i, (src, idx) in enumerate(meta.get("chain", [])))
        return CachedData(GraphInputs(arrays), hold, int(meta["calibration_clips"]), tuple(meta["skipped"]), chain)

    def store(self, key: str, data: CachedData) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, np.ndarray] = {}
        names = []
        for role, named in data.inputs.arrays.items():
            for inp, arr in named.items():
                names.append(f"{role}/{inp}")
                payload[f"in/{role}/{inp}"] = arr
        for i, clip in enumerate(data.holdout):
            payload[f"holdout/{i}"] = clip.frames
        for i, clip in enumerate(data.chain):
            payload[f"chain/{i}"] = clip.frames
        meta = {
            "inputs": names,
            "holdout": [[c.source, c.index] for c in data.holdout],
            "chain": [[c.source, c.index] for c in data.chain],
            "calibration_clips": data.calibration_clips,
            "skipped": list(data.skipped),
        }
        payload["__meta__"] = np.asarray(jsonsafe.dumps(meta))
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, **payload)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.prune(keep=path)
        return path

    def prune(self, keep: Path | None = None) -> list[Path]:
        """Deletes the least recently used entries until the folder fits in ``max_bytes``."""
        entries = []
        for p in (self.root / "inputs").glob("*.npz"):
            try:
                st = p.stat()
            except FileNotFoundError:  # another process pruned it first
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            if keep is not None and p == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            removed.append(p)
        if removed:
            log.info("calibration cache: removed %d least recently used input sets to stay under %.1f GB", len(removed), self.max_bytes / 1e9)
        return removed


