"""Settings of an offline run: what each prediction is (as ``videploy predict``), and how it scales.

``None`` means "the default", worked out where the information is (the bundle, the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

from videploy.errors import VideployError

GPU_DEVICES = ("cuda", "tensorrt")


@dataclass(frozen=True)
class PredictOptions:
    """What ``videploy predict`` would be asked: the answer for a video is the same as its answer."""

    backend: str = "onnxruntime"  # "onnxruntime" or "tensorrt"
    device: str | None = None  # None: cpu (onnxruntime), cuda (tensorrt)
    precision: str | None = None
    labels: str | None = None  # class-name file overriding the bundle's
    top_k: int = 5
    views: str | None = None  # "CLIPSxCROPS" or "official"; None: 1x1
    thresholds: tuple[float, ...] | None = None  # AdaFocusV3 exit thresholds eta_0..eta_T
    batch_size: int | None = None  # rows per backend call; None: the bundle's maximum
    continuous: bool | None = None  # AdaFocusV3 batching: None/True continuous (the default), False static
    threads: int | None = None  # onnxruntime intra-op threads; None: the actor's CPUs

    @property
    def resolved_device(self) -> str:
        return self.device or ("cuda" if self.backend == "tensorrt" else "cpu")

    @property
    def uses_gpu(self) -> bool:
        return self.backend == "tensorrt" or self.resolved_device in GPU_DEVICES


@dataclass(frozen=True)
class ScaleOptions:
    """How the work is spread over Ray: decode tasks, an inference actor pool, result shards."""

    address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001", "host:6379"); None: start a local instance
    num_cpus: int | None = None  # CPUs of a local instance (None: all of the machine's)
    actors: int | tuple[int, int] | None = None  # inference actors, fixed or (min, max); None: one per GPU on GPU backends, else 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None  # None: 1 on GPU backends, 0 on the CPU
    inference_batch: int | None = None  # videos per actor call; None: the bundle's maximum batch
    decode_batch: int = 2  # videos per decode call
    decode_cpus: float = 1.0  # CPUs reserved by each decode task
    shard_rows: int = 1000  # a results shard is written every this many rows ...
    shard_seconds: float = 60.0  # ... or this many seconds, whichever comes first
    limit: int | None = None  # predict at most this many of the pending videos (a trial run)

    def check(self) -> None:
        if self.address is not None and self.num_cpus is not None:
            raise VideployError("--num-cpus sizes a local Ray instance; with --address the cluster's own resources are used")
        if isinstance(self.actors, tuple):
            lo, hi = self.actors
            if not 1 <= lo <= hi:
                raise VideployError(f"actors must be MIN-MAX with 1 <= MIN <= MAX, got {lo}-{hi}")
        elif self.actors is not None and self.actors < 1:
            raise VideployError(f"actors must be >= 1, got {self.actors}")
        for name, value in (("cpus per actor", self.cpus_per_actor), ("decode cpus", self.decode_cpus)):
            if not value > 0:
                raise VideployError(f"{name} must be > 0, got {value}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise VideployError(f"gpus per actor must be >= 0, got {self.gpus_per_actor}")
        for name, value in (("inference batch", self.inference_batch), ("decode batch", self.decode_batch), ("limit", self.limit), ("num cpus", self.num_cpus)):
            if value is not None and value < 1:
                raise VideployError(f"{name} must be >= 1, got {value}")
