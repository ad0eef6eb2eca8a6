"""AdaFocusV3 with real early termination: each video stops at its first confident exit.

This is the one implementation of AdaFocusV3's chain: prediction, export verification (which runs
it on the onnxruntime and PyTorch backends and compares every call) and the benchmark (which
records the inputs it feeds each graph) all go through :class:`AdaptiveRunner`, over any
:class:`~videploy.runtime.backends.base.Backend`. The three graphs (their contracts are in
``docs/architecture.md``, "The graph contracts") run as

    glance (all videos)  -> exit 0 decided: entropy(p_0) <= eta_0 ?
    policy (only videos still active)           -> cubes: frame indices + actions + boxes
    local step 1, 2, ... (only videos still active, batch compacted after every step)
                          -> exit t decided: entropy(p_t) <= eta_t ?   (the last exit always stops)

A video that exits leaves the batch: the next local call has fewer rows, and a video that exited
at step t has cost exactly ``exit_gflops[t]`` (policy plus t local-encoder rows), which the
backend's :class:`~videploy.runtime.backends.base.Counters` make visible.

Two schedules, with identical per-video results (every graph is row-independent):

* **continuous** (default): a stream of videos keeps the local-encoder batch full — whenever videos
  exit, new ones are admitted (their glance + policy run), and the next local call mixes videos at
  different steps (the graph's per-row ``step`` input selects each row's classifier).
* **batched** (static, ``continuous=False``): videos run in groups of ``batch_size``; a group shrinks
  as its videos exit, so later local calls run with fewer rows.

Continuous is the default because it was measured faster wherever videos exit early: on 2 CPU
cores, full size, 16 clips with equal exits, 1.78 s vs 2.03 s for static batching (model only),
and even with every step (no exit, nothing to refill) within noise of static
(``videploy bench``'s "static vs continuous batching", ``benchmarks/bench_early_exit.py``).

Thresholds: ``eta_t`` per exit (length ``num_steps + 1``), from the call, else the manifest, else
``-inf`` everywhere (no early exit: the full model at its last exit). ``eta_0 = +inf`` stops every
video at the glance and no local step runs.

The exit rule. At exit t a video stops when its criterion reaches eta_t
(:mod:`videploy.runtime.exit_criteria`: the manifest's ``criterion``, by default
``entropy(softmax(logits_t)) <= eta_t``, ties stop), computed on the host in float64 from the
graph's logits, row by row -- not taken from the graph's float32 ``entropy`` output, whose
reduction differed by ~1e-7 between batch sizes. A video's criterion is then a function of its own
logits, which onnxruntime computes bit-identically at every batch size (measured on the exported
graphs: a row's logits are equal bit for bit at batches 1 to 8), so a threshold placed exactly at
a video's value -- as calibration places them -- stops that video whatever its batch-mates.

Between steps only the logits (the exit decision) are fetched to the host; features and states
stay backend-side (device memory on TensorRT).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from videploy.bundle.manifest import EarlyExit
from videploy.errors import VideployError
from videploy.runtime.backends.base import Backend
from videploy.runtime.exit_criteria import criterion_values, never_stops, stops
from videploy.runtime.lazy_frames import LazyFrames


POLICIES = ("learned", "random")


def exit_thresholds(ee: EarlyExit, override: Sequence[float] | None = None, model_name: str = "the bundle") -> np.ndarray:
    """eta_0..eta_T for a bundle's exits: ``override`` (checked), else the manifest's, else "never stop"."""
    n = ee.num_steps + 1
    if override is not None:
        eta = np.asarray([float(x) for x in override], dtype=np.float64)
        if eta.shape != (n,):
            raise VideployError(f"{model_name!r} has {n} exits (glance + {ee.num_steps} focus steps), so it needs {n} thresholds, got {eta.size}")
    elif ee.thresholds is not None:
        eta = np.asarray(ee.thresholds, dtype=np.float64)
    else:
        eta = np.full(n, never_stops(ee.criterion))
    if np.isnan(eta).any():
        raise VideployError(f"exit thresholds must be numbers (inf / -inf allowed), got {eta.tolist()}")
    return eta


def exit_step(values: Sequence[float], thresholds: Sequence[float], criterion: str = "entropy") -> int:
    """The exit a video whose criterion is ``values`` at exits 0..T takes under ``thresholds``: the
    first exit whose threshold it reaches, else the last (what the runner decides step by step)."""
    hit = np.flatnonzero(stops(np.asarray(values, dtype=np.float64), np.asarray(thresholds, dtype=np.float64)[: len(values)], criterion))
    return int(hit[0]) if hit.size else len(values) - 1


@dataclass(frozen=True)
class Cube:
    """One video cube a local step looked at."""

    step: int  # 1-based focus step (exit ``step`` follows it)
    sampled: tuple[int, ...]  # positions among the num_segments sampled frames
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in input (cropped) pixels
    action: tuple[float, ...]  # the policy's action (y, x, scale_y, scale_x)
    frames: tuple[int, ...] = ()  # frame numbers in the video (filled in by the recognizer)


@dataclass(frozen=True)
class AdaptiveOutcome:
    """Where one video stopped and what it cost."""

    exit: int  # 0 = glance; t = after local step t
    logits: np.ndarray  # (num_classes,) at that exit
    entropies: tuple[float, ...]  # the exit criterion (the manifest's; entropy in nats by default) at exits 0..exit
    cubes: tuple[Cube, ...]  # the cubes looked at (len == exit)
    gflops: float  # manifest exit_gflops[exit]
    thresholds: tuple[float, ...]
    exit_logits: np.ndarray | None = None  # (exit + 1, num_classes): every exit's logits, when asked for


@dataclass
class _Video:
    key: int
    frames: "np.ndarray | LazyFrames"  # (S, 3, H, W): indexed by positions, as arrays are
    entropies: list[float] = field(default_factory=list)
    step: int = 0  # local steps done
    frame_indices: np.ndarray | None = None  # (Tf, K)
    actions: np.ndarray | None = None  # (Tf, 4)
    boxes: np.ndarray | None = None  # (Tf, 4)
    exit_logits: list[np.ndarray] | None = None  # every exit's logits, when kept


@dataclass
class _Pool:
    """Videos between local steps, with their backend-side states (rows aligned with ``videos``)."""

    videos: list[_Video]
    global_state: Any = None
    local_state: Any = None


class AdaptiveRunner:
    """Runs an AdaFocusV3 bundle on a backend with per-video early exits."""

    def __init__(self, backend: Backend, policy: str = "learned", seed: int = 0):
        """``policy="random"`` replaces the policy graph by uniformly random cubes (distinct frames
        in time order, uniform actions; seeded per video): the baseline a learned policy must beat
        (paper Table 5). Its cubes have no boxes (NaN): the crop is computed inside the local graph."""
        if policy not in POLICIES:
            raise VideployError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.policy = policy
        self._seed = int(seed)
        self.backend = backend
        self.bundle = backend.bundle
        if self.bundle.early_exit is None:
            raise VideployError(f"{self.bundle.name!r} is not an adaptive (AdaFocusV3) bundle; it has no early_exit section")
        self.manifest = self.bundle.manifest
        self.ee: EarlyExit = self.bundle.early_exit
        self.glance_indices = np.asarray(self.ee.glance_indices, dtype=np.int64)
        self.state_size = self.bundle.state_size

    # --- thresholds -------------------------------------------------------------------------------
    def thresholds(self, override: Sequence[float] | None = None) -> np.ndarray:
        """eta_0..eta_Tf: ``override``, else the manifest's, else "never stop" (-inf for entropy): no early exit."""
        return exit_thresholds(self.ee, override, self.manifest.model_name)

    # --- public -----------------------------------------------------------------------------------
    def run(
        self,
        videos: Iterable[np.ndarray],
        thresholds: Sequence[float] | None = None,
        batch_size: int | None = None,
        continuous: bool = True,
        keep_exit_logits: bool = False,
    ) -> list[AdaptiveOutcome]:
        """Outcomes in input order. Each video is (num_segments, 3, H, W) float32 (the sampled frames),
        or :class:`~videploy.runtime.lazy_frames.LazyFrames` (frames prepared when a step needs them)."""
        return list(self.iter_run(videos, thresholds, batch_size, continuous, keep_exit_logits))

    def iter_run(
        self,
        videos: Iterable[np.ndarray],
        thresholds: Sequence[float] | None = None,
        batch_size: int | None = None,
        continuous: bool = True,
        keep_exit_logits: bool = False,
    ) -> Iterator[AdaptiveOutcome]:
        """Like :meth:`run`, yielding each outcome (in input order) as soon as it and all before it are done.

        ``keep_exit_logits``: each outcome carries the logits of every exit it passed.
        """
        eta = self.thresholds(thresholds)
        bs = self.bundle.batch_size(batch_size, self.backend.dynamic_batch)
        self._keep = keep_exit_logits
        done: dict[int, AdaptiveOutcome] = {}
        stream = (self._video(i, v) for i, v in enumerate(videos))
        schedule = self._run_continuous if continuous else self._run_batched
        next_key = 0
        for _ in schedule(stream, eta, bs, done):
            while next_key in done:
                yield done.pop(next_key)
                next_key += 1
        while next_key in done:
            yield done.pop(next_key)
            next_key += 1

    def _video(self, key: int, frames: "np.ndarray | LazyFrames") -> _Video:
        S = self.ee.num_segments
        spec = self.manifest.graph("glance").input("frames")
        if frames.ndim != 4 or frames.shape[0] != S:
            raise VideployError(f"an AdaFocusV3 video input must be ({S}, 3, H, W) (the {S} sampled frames), got shape {tuple(frames.shape)}")
        if not isinstance(frames, LazyFrames):
            frames = np.ascontiguousarray(frames, dtype=spec.dtype)
        return _Video(key=key, frames=frames, exit_logits=[] if self._keep else None)

    # --- schedules (generators: they yield after every backend step, so results stream out) -------
    def _run_batched(self, stream: Iterator[_Video], eta: np.ndarray, bs: int, results: dict[int, AdaptiveOutcome]) -> Iterator[None]:
        while True:
            group = _take(stream, bs)
            if not group:
                return
            pool = self._admit(group, eta, results)
            yield
            while pool.videos:
                self._local_step(pool, eta, results)
                yield

    def _run_continuous(self, stream: Iterator[_Video], eta: np.ndarray, bs: int, results: dict[int, AdaptiveOutcome]) -> Iterator[None]:
        pool = _Pool(videos=[])
        exhausted = False
        while True:
            # fill the pool; newcomers that exit at the glance leave room for more
            room = bs - len(pool.videos)
            while room > 0 and not exhausted:
                newcomers = _take(stream, room)
                exhausted = len(newcomers) < room
                if newcomers:
                    self._merge(pool, self._admit(newcomers, eta, results))
                    yield
                room = bs - len(pool.videos)
            if not pool.videos:
                if exhausted:
                    return
                continue
            self._local_step(pool, eta, results)
            yield

    # --- the steps --------------------------------------------------------------------------------
    def _admit(self, group: list[_Video], eta: np.ndarray, results: dict[int, AdaptiveOutcome]) -> _Pool:
        """Glance for all of ``group``; policy for those that do not exit at the glance."""
        b = self.backend
        frames = _gather_frames(group, [self.glance_indices] * len(group))
        out = b.run("glance", {"frames": frames}, fetch=("logits",))
        logits = np.asarray(out["logits"])
        ent = criterion_values(logits, self.ee.criterion)
        for i, (v, e) in enumerate(zip(group, ent)):
            v.entropies.append(float(e))
            if v.exit_logits is not None:
                v.exit_logits.append(np.array(logits[i], dtype=np.float32))
        stop = stops(ent, float(eta[0]), self.ee.criterion) | (self.ee.num_steps == 0)
        self._finish([v for v, s in zip(group, stop) if s], np.flatnonzero(stop), logits, eta, results)
        rest = np.flatnonzero(~stop)
        if rest.size == 0:
            return _Pool(videos=[])
        active = [group[i] for i in rest]
        all_rows = rest.size == len(group)
        featmap = out["featmap"] if all_rows else b.take(out["featmap"], rest)
        global_feat = out["global_feat"] if all_rows else b.take(out["global_feat"], rest)
        global_state = b.take(out["global_state"], rest)
        pol = self._random_cubes(active) if self.policy == "random" else b.run("policy", {"featmap": featmap, "global_feat": global_feat})
        fidx = np.asarray(pol["frame_indices"]).astype(np.int64)
        S = self.ee.num_segments
        want = (len(active), self.ee.num_steps, self.ee.frames_per_cube)
        if fidx.size != np.prod(want):
            raise VideployError(
                f"the policy graph chose frame indices of shape {fidx.shape}, expected (batch, num_steps, frames_per_cube) = {want}; "
                "the bundle's graphs and manifest disagree, re-export it"
            )
        if fidx.min() < 0 or fidx.max() >= S:
            raise VideployError(f"the policy graph chose frame indices outside [0, {S}) ({fidx.min()}..{fidx.max()}); the bundle's graphs are inconsistent, re-export it")
        for j, v in enumerate(active):
            v.frame_indices = fidx[j].reshape(self.ee.num_steps, -1)
            v.actions = np.asarray(pol["actions"][j], dtype=np.float32)
            v.boxes = np.asarray(pol["boxes"][j], dtype=np.float64)
            _prefetch(v)
        dtype = self.manifest.graph("local").input("local_state").dtype
        # zeros before the first step are exact: the local MLP output is post-ReLU (>= 0) and the state is a running max
        local_state = np.zeros((len(active), self.state_size), dtype=dtype)
        return _Pool(videos=active, global_state=global_state, local_state=local_state)

    def _random_cubes(self, videos: list[_Video]) -> dict[str, np.ndarray]:
        # One generator per video, from (seed, position in the run): the same cubes in every
        # schedule and batch size, like every other per-video result.
        S, steps, K = self.ee.num_segments, self.ee.num_steps, self.ee.frames_per_cube
        picks, n = steps * K, len(videos)
        fidx = np.zeros((n, picks), np.int64)
        actions = np.zeros((n, steps, 4), np.float32)
        for j, v in enumerate(videos):
            rng = np.random.default_rng([self._seed, v.key])
            fidx[j] = np.sort(rng.choice(S, size=picks, replace=picks > S))
            actions[j] = rng.random((steps, 4))
        return {"frame_indices": fidx.reshape(n, steps, K), "actions": actions, "boxes": np.full((n, steps, 4), np.nan)}

    def _local_step(self, pool: _Pool, eta: np.ndarray, results: dict[int, AdaptiveOutcome]) -> None:
        b = self.backend
        vids = pool.videos
        frames = _gather_frames(vids, [v.frame_indices[v.step] for v in vids])
        action = np.stack([v.actions[v.step] for v in vids]).astype(self.manifest.graph("local").input("action").dtype)
        step = np.asarray([v.step for v in vids], dtype=np.int64)
        out = b.run(
            "local",
            {"frames": frames, "action": action, "step": step, "local_state": pool.local_state, "global_state": pool.global_state},
            fetch=("logits",),
        )
        logits = np.asarray(out["logits"])
        ent = criterion_values(logits, self.ee.criterion)
        stop = np.zeros(len(vids), dtype=bool)
        for i, v in enumerate(vids):
            v.step += 1
            v.entropies.append(float(ent[i]))
            if v.exit_logits is not None:
                v.exit_logits.append(np.array(logits[i], dtype=np.float32))
            stop[i] = bool(stops(ent[i], float(eta[v.step]), self.ee.criterion)) or v.step == self.ee.num_steps
        self._finish([v for v, s in zip(vids, stop) if s], np.flatnonzero(stop), logits, eta, results)
        keep = np.flatnonzero(~stop)
        pool.videos = [vids[i] for i in keep]
        for v in pool.videos:
            _prefetch(v)
        if keep.size:
            pool.local_state = b.take(out["next_local_state"], keep)
            pool.global_state = b.take(pool.global_state, keep)
        else:
            pool.local_state = pool.global_state = None

    def _merge(self, pool: _Pool, new: _Pool) -> None:
        if not new.videos:
            return
        if not pool.videos:
            pool.videos, pool.global_state, pool.local_state = new.videos, new.global_state, new.local_state
            return
        b = self.backend
        pool.videos = pool.videos + new.videos
        pool.global_state = b.concat([pool.global_state, new.global_state])
        pool.local_state = b.concat([pool.local_state, new.local_state])

    def _finish(self, done: list[_Video], rows: np.ndarray, logits: Any, eta: np.ndarray, results: dict[int, AdaptiveOutcome]) -> None:
        if not done:
            return
        for v, lg in zip(done, np.asarray(logits)[rows]):
            cubes = tuple(
                Cube(
                    step=t + 1,
                    sampled=tuple(int(i) for i in v.frame_indices[t]),
                    box=tuple(float(x) for x in v.boxes[t]),
                    action=tuple(float(x) for x in v.actions[t]),
                )
                for t in range(v.step)
            )
            results[v.key] = AdaptiveOutcome(
                exit=v.step,
                logits=np.array(lg, dtype=np.float32),
                entropies=tuple(v.entropies),
                cubes=cubes,
                gflops=float(self.ee.exit_gflops[v.step]),
                thresholds=tuple(float(x) for x in eta),
                exit_logits=None if v.exit_logits is None else np.stack(v.exit_logits),
            )
            v.frames = np.empty((0,))  # release the frames early; a long stream must not keep them

def _gather_frames(videos: list[_Video], positions: Sequence[Any]) -> np.ndarray:
    """(N, k, 3, H, W): each video's frames at its positions, copied once into the batch array
    (fancy indexing then stacking copied every frame twice: ~1% of a forced full-size batch)."""
    first = videos[0].frames
    dtype = first.dtype if isinstance(first, np.ndarray) else np.float32
    out = np.empty((len(videos), len(positions[0]), *first.shape[1:]), dtype=dtype)
    for j, (v, pos) in enumerate(zip(videos, positions)):
        if isinstance(v.frames, np.ndarray):
            np.take(v.frames, pos, axis=0, out=out[j], mode="clip")  # positions are checked; 'raise' would buffer a copy
        else:  # LazyFrames: prepared on demand
            out[j] = v.frames[pos]
    return out


def _prefetch(v: _Video) -> None:
    # deferred frames (LazyFrames): prepare the next step's cube while the model runs
    if isinstance(v.frames, LazyFrames):
        v.frames.prefetch(v.frame_indices[v.step])


def _take(stream: Iterator[_Video], n: int) -> list[_Video]:
    out = []
    for v in stream:
        out.append(v)
        if len(out) == n:
            break
    return out
