"""AdaFocusV3's sampled frames, made ready only when the chain asks for them.

AdaFocusV3 looks at all ``T`` sampled frames only if a video runs every focus step: the glance
reads ``len(glance_indices)`` of them, and local step t reads the frames the policy chose for it.
A video that exits at the glance never needs its focus frames, so :func:`videploy.runtime.video.load_video`
with ``defer=`` reads the glance frames ready for the model and leaves the rest to this object:

* grabbing through the file (frames close together): every sampled frame is decoded anyway (an
  H.264 frame needs the frames before it), but the deferred ones are kept as decoded
  (:class:`~videploy.runtime.video.RawFrame`): their colour conversion, resize, crop and
  normalisation -- most of the per-frame cost at 720p -- happen only if a step asks for them;
* seeking (frames far apart, long videos): the deferred frames are not decoded at all until asked
  for, each then costs one seek, as it would have when decoding everything up front.

``frames[positions]`` gives (n, 3, H, W) float32 exactly as the eager path does (same arithmetic);
:meth:`prefetch` prepares frames on a worker thread while the model runs (OpenCV releases the GIL).
The runner asks for the next step's frames that way, so at most one focus frame per exiting video
is prepared in vain. Memory: the kept frames of the videos in flight (a decoded 720p frame is
2.8 MB; at most :data:`~videploy.runtime.video.MAX_RAW_BYTES` unconverted per video, the rest
converted at once), released by :meth:`close`.
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import numpy as np

from videploy.errors import VideployError
from videploy.runtime.video import RawFrame

if TYPE_CHECKING:  # pragma: no cover
    from videploy.runtime.video import _FrameTransform, _Reader


class LazyFrames:
    """The T sampled frames of one video (one clip, one crop), each made model-ready on first use."""

    def __init__(self, reader: "_Reader", sampled: np.ndarray, kept: dict, transform: "_FrameTransform", prefetch: Executor | None = None):
        self.sampled = np.asarray(sampled, dtype=np.int64)  # frame numbers of the T positions
        self._kept = dict(kept)  # frame number -> (1, H, W, 3) uint8 crops, or RawFrame
        self._transform = transform
        self._reader = reader
        self._executor = prefetch
        self._lock = threading.Lock()
        self.shape = (len(self.sampled), 3, transform.crop_h, transform.crop_w)
        self.ndim = 4
        self.prepared = 0  # frames made ready after load (what deferring did not save)
        self._closed = weakref.finalize(self, reader.close)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, positions) -> np.ndarray:
        """(n, 3, H, W) float32 for the given positions among the T sampled frames."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < 0 or pos.max() >= len(self.sampled)):
            raise IndexError(f"positions must be in [0, {len(self.sampled)}), got {pos.tolist()}")
        crops = np.stack([self._crop(int(self.sampled[p])) for p in pos])[:, 0]
        return np.ascontiguousarray(self._transform.normalise(crops))

    def prefetch(self, positions) -> None:
        """Prepare these positions' frames on the prefetch thread (no-op without one); errors surface
        when the frames are asked for."""
        if self._executor is None or not self._closed.alive:
            return
        todo = [int(self.sampled[int(p)]) for p in np.asarray(positions).reshape(-1)]
        if any(not isinstance(self._kept.get(f), np.ndarray) for f in todo):
            self._executor.submit(self._quietly, todo)

    def display(self) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB crops of every sampled frame, for drawing (prepares all of them)."""
        return np.stack([self._crop(int(f))[0] for f in self.sampled])

    def close(self) -> None:
        """Drop the kept frames and the reader (idempotent)."""
        with self._lock:
            self._kept.clear()
        self._closed()

    # ---------------------------------------------------------------------------------------------
    def _quietly(self, frames: list[int]) -> None:
        try:
            for f in frames:
                self._crop(f)
        except Exception:  # the consumer's own call raises it, with the video named
            pass

    def _crop(self, f: int) -> np.ndarray:
        with self._lock:
            if not self._closed.alive:
                raise VideployError(f"the frames of {str(self._reader.path)!r} were already released")
            got = self._kept.get(f)
            if isinstance(got, np.ndarray):
                return got
            if isinstance(got, RawFrame):
                crop = self._reader._keep(got.bgr, self._transform)
            else:
                crop = self._reader.read_one(f, self._transform)
                if crop is None:
                    raise VideployError(
                        f"frame {f} of {str(self._reader.path)!r} could not be read again for a focus step (the file changed "
                        "or decodes inconsistently); re-encode it"
                    )
            self._kept[f] = crop
            self.prepared += 1
            return crop
