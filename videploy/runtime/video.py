"""Video input: decode with OpenCV, sample frames, resize / crop / normalise as the manifest says.

The public entry points are :func:`load_video` (tensor plus everything a result should report:
which frames were used, whether the video was short, ...) and :func:`decode_views` (just the
tensor, what export uses for its verification inputs).

Views
    A call produces ``num_clips x num_crops`` views, **clip-major** (view ``c * num_crops + k`` is
    clip ``c``, crop ``k``), each ``(T, 3, H, W)`` float32. ``None`` for either count means 1:
    multi-view testing happens only when asked for (``Preprocessing.num_clips/num_crops`` record the
    official protocol; the caller decides whether to pay for it). Crops: 1 = centre crop after the
    short-side resize; 3 = Video-FocalNet's official ``ThreeCrop`` (short side resized to the crop
    size, then left / right / middle — or top / bottom / middle for portrait — crops).

Decoding (files)
    Frames are read with ``cv2.VideoCapture`` and converted BGR -> RGB. Only the needed frames are
    converted and kept: the reader grabs (decodes without colour conversion) through the video, or
    seeks when the needed frames are far apart. ``CAP_PROP_FRAME_COUNT`` is only a hint: the count is
    verified (the frame at ``count - 1`` must exist and be the last), and when it is wrong or missing
    the frames are counted by decoding sequentially and the indices recomputed from the real count.
    Each kept frame is resized and cropped right after decoding, so memory is ``T x crops`` crops
    plus one frame at source resolution and one resized frame. With ``defer=`` (AdaFocusV3's
    focus frames, :mod:`videploy.runtime.lazy_frames`) the deferred frames are kept decoded but
    not converted (grabbing) or not decoded at all (seeking) until a focus step asks for them. Frames larger than
    :data:`MAX_FRAME_PIXELS` (8K UHD, 7680 x 4320) are refused before decoding, and so are frames
    whose resize would exceed that many pixels (an extreme aspect ratio such as 1 x 4000: the short
    side is scaled up to the model's size and the long side with it).

    The file is opened by its absolute path (a relative ``name:rest`` would be taken by FFmpeg as a
    protocol). A path containing ``%`` is opened through a temporary symlink with a plain name,
    because FFmpeg's image-sequence reader (and OpenCV's) would expand ``img_%03d.png`` into
    *other* files; so is a path that is not valid UTF-8 (OpenCV's Python binding crashes on it).
    OpenCV errors and running out of memory while decoding one video become a
    :class:`VideployError` for that video.

Fallbacks (reported in :attr:`VideoInput.notes`, never silent)
    * fewer frames than the model samples: indices repeat as the official samplers do for short
      videos (wrap-around for ``clip``, repeated segment centres for ``segments`` / ``uniform``);
    * a truncated / damaged file: the frames that decode are used (the count is re-measured); if
      none decodes the call fails with a :class:`VideployError`;
    * a wrong container frame count: recounted as above.

Determinism: a file gives exactly the views of its frames passed as an array, run after run. The
one exception is a *damaged* stream decoded with FFmpeg's frame threads (OpenCV's default): how the
decoder conceals broken macroblocks can vary between runs. Single-threaded decoding would fix
that at a large cost in decoding speed for every healthy video, so it is not done.

Everything else that is wrong (missing path, directory, ``-`` for standard input, not a video, zero
frames, a frame array of the wrong shape or dtype) raises :class:`VideployError` naming the input.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import cv2
import numpy as np

from videploy.bundle.manifest import Preprocessing
from videploy.errors import VideployError
from videploy.runtime.sampling import sample_indices

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Executor

    from videploy.runtime.lazy_frames import LazyFrames

log = logging.getLogger(__name__)

# 8K UHD. A larger frame is ~100 MB per decoded BGR copy, and such a size in a header is usually a
# damaged or hostile file; refuse it rather than let the decoder allocate gigabytes.
MAX_FRAME_PIXELS = 7680 * 4320
# Multi-view testing uses a few clips (Video-FocalNet's official protocol: 4); a huge count is a
# typo that would allocate clips x crops x T frames.
MAX_CLIPS = 64
# Characters that make FFmpeg / OpenCV read a file name as an image-sequence pattern.
_PATTERN_CHARS = "%"
# Seek instead of grabbing through when needed frames are on average this many frames apart.
SEEK_MIN_GAP = 150
# Deferred frames (AdaFocusV3's focus frames) kept decoded but unconverted, per video: beyond this
# many bytes they are converted and cropped right away like the others (a 720p frame is 2.8 MB,
# a 4K one 25 MB; memory stays bounded per video in flight, whatever the resolution).
MAX_RAW_BYTES = 256 * 2**20
# A frame array source must be (T, H, W, 3) uint8 RGB.
VideoSource = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class VideoInput:
    """One video, ready for a graph: ``views`` is (views, T, 3, H, W) float32, clip-major."""

    source: str  # the path, or "<array (T, H, W, 3)>"
    views: np.ndarray
    frame_indices: np.ndarray  # (num_clips, T) indices into the video's frames
    num_frames: int  # frames in the video (measured when the container's count was wrong)
    num_clips: int
    num_crops: int
    size: tuple[int, int]  # source (H, W)
    fps: float | None
    notes: tuple[str, ...] = ()
    # clip 0, crop 0 after resize + crop, before normalisation: (T, H, W, 3) uint8 RGB, for drawing
    display_frames: np.ndarray | None = field(default=None, repr=False)
    # AdaFocusV3 with deferred frames (load_video(defer=...)): the sampled frames, made ready on
    # demand (views is then empty); see videploy.runtime.lazy_frames
    lazy: "LazyFrames | None" = field(default=None, repr=False, compare=False)


def decode_views(
    source: VideoSource,
    preprocessing: Preprocessing,
    num_clips: int | None = None,
    num_crops: int | None = None,
) -> np.ndarray:
    """The model input for ``source``: (num_clips * num_crops, T, 3, H, W) float32, clip-major.

    ``None`` means one clip / one crop (single-view, the cheap default); pass the counts for the
    official multi-view protocol (e.g. ``preprocessing.num_clips``, ``preprocessing.num_crops``).
    """
    return load_video(source, preprocessing, num_clips=num_clips, num_crops=num_crops).views


def load_video(
    source: VideoSource,
    preprocessing: Preprocessing,
    num_clips: int | None = None,
    num_crops: int | None = None,
    seek: bool | None = None,
    defer: Sequence[int] | None = None,
    prefetch: "Executor | None" = None,
) -> VideoInput:
    """Decode, sample and preprocess ``source`` (a path or a (T, H, W, 3) uint8 RGB array).

    ``seek``: ``None`` decides from the frame gaps, ``True`` / ``False`` force seeking / grabbing
    (both give the same frames; tests use this).

    ``defer`` (one clip, one crop, a file): positions among the T sampled frames that may never be
    needed (AdaFocusV3's focus frames). Their resize / crop / normalisation -- and, when the reader
    seeks, their decoding -- waits until something asks for them: the result's ``lazy``
    (:class:`~videploy.runtime.lazy_frames.LazyFrames`) holds the frames and ``views`` is empty.
    ``prefetch``: where ``LazyFrames.prefetch`` prepares frames ahead of the consumer.
    """
    clips = 1 if num_clips is None else int(num_clips)
    crops = 1 if num_crops is None else int(num_crops)
    check_view_counts(clips, crops)
    if defer is not None and (clips, crops) != (1, 1):
        raise VideployError(f"deferred frames apply to one view (one clip, one crop), got {clips} clips x {crops} crops")
    pre = preprocessing
    T = pre.num_frames
    notes: list[str] = []
    lazy = None

    if isinstance(source, np.ndarray):
        frames_arr = _check_array(source)
        label = f"<array {tuple(frames_arr.shape)}>"
        transform = _FrameTransform(pre, crops, "the frame array")
        size = (int(frames_arr.shape[1]), int(frames_arr.shape[2]))
        transform.check(*size)
        n = frames_arr.shape[0]
        idx = sample_indices(pre.sampling, n, T, num_clips=clips, frame_interval=pre.frame_interval)
        kept = {int(i): transform.crops(frames_arr[int(i)]) for i in np.unique(idx)}
        fps = None
    elif isinstance(source, (str, os.PathLike)):
        path = _check_path(source)
        label = str(path)
        transform = _FrameTransform(pre, crops, f"video {label!r}")
        try:
            reader = _Reader(path)
            try:
                size, fps = reader.size, reader.fps
                if min(size) > 0:  # the header's size, before decoding anything (0 = unknown)
                    transform.check(*size)
                n, idx, kept = reader.read_sampled(pre, clips, transform, seek, notes, defer)
                if defer is not None:
                    from videploy.runtime.lazy_frames import LazyFrames

                    lazy = LazyFrames(reader, idx[0], kept, transform, prefetch)
                    reader = None  # the frames own it now (a deferred seek reopens the file)
            finally:
                if reader is not None:
                    reader.close()
        except cv2.error as exc:
            # OpenCV asserts on some damaged streams; that is this video's problem, not the caller's
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise VideployError(f"OpenCV failed while decoding {label!r} ({detail}); the file is damaged or in an unsupported format, re-encode it") from None
        except MemoryError:
            raise VideployError(f"ran out of memory while decoding {label!r} (its frames are very large); downscale it first, e.g. ffmpeg -i IN -vf scale=-2:720 OUT.mp4") from None
    else:
        raise VideployError(
            f"cannot read a video from a {type(source).__name__}; pass a file path or a numpy array of frames (T, H, W, 3) uint8 RGB"
        )

    if n < T:
        notes.append(
            f"the video has {n} frame{'s' if n != 1 else ''}, fewer than the {T} the model samples: "
            f"frames are repeated ({_REPEAT[pre.sampling]}), as the official evaluation does for short videos"
        )
    if lazy is not None:
        views, display = np.empty((0,), dtype=np.float32), None
    else:
        views, display = transform.views(idx, kept)
    return VideoInput(
        source=label,
        views=views,
        frame_indices=idx,
        num_frames=int(n),
        num_clips=clips,
        num_crops=crops,
        size=size,
        fps=fps,
        notes=tuple(notes),
        display_frames=display,
        lazy=lazy,
    )


def read_frames(source: str | os.PathLike, max_frames: int, short_side: int) -> np.ndarray:
    """The first ``max_frames`` frames of a video file as (T, H, W, 3) uint8 RGB, each scaled down so
    its short side is at most ``short_side`` as it is read (memory stays bounded), with the same
    guards as :func:`load_video` (file names, frame size limits, damaged streams)."""
    path = _check_path(source)
    try:
        with _Reader(path) as reader:
            frames = reader.read_leading(int(max_frames), int(short_side))
    except cv2.error as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise VideployError(f"OpenCV failed while decoding {str(path)!r} ({detail}); the file is damaged or in an unsupported format, re-encode it") from None
    if not frames:
        raise VideployError(f"no frame of {str(path)!r} could be decoded; check the file plays, or re-encode it")
    return np.stack(frames)


def check_view_counts(num_clips: int, num_crops: int) -> None:
    """Raise :class:`VideployError` unless 1 <= ``num_clips`` <= :data:`MAX_CLIPS` and ``num_crops`` is 1 or 3."""
    if not 1 <= num_clips <= MAX_CLIPS:
        raise VideployError(
            f"num_clips must be between 1 and {MAX_CLIPS}, got {num_clips}; multi-view testing uses a few clips "
            "(Video-FocalNet's official protocol is 4 clips x 3 crops)"
        )
    if num_crops not in (1, 3):
        raise VideployError(f"num_crops must be 1 (centre crop) or 3 (official three-crop), got {num_crops}")


def quiet_decoder_logs() -> None:
    """Silence FFmpeg's and OpenCV's own console messages for this process (command-line tools call it).

    Damaged videos make FFmpeg print a line per broken macroblock; the runtime already reports what
    matters (an error, or a note that frames were recounted). Must run before the first
    ``cv2.VideoCapture`` of the process; an ``OPENCV_FFMPEG_LOGLEVEL`` already set by the user wins.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv_logging = getattr(cv2.utils, "logging", None)  # OpenCV 5; 4.x has cv2.setLogLevel instead
    if cv_logging is not None:
        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_SILENT)
    else:
        cv2.setLogLevel(0)  # 0 = silent


_REPEAT = {
    "clip": "indices wrap around, mmaction's 'loop' rule",
    "uniform": "evenly spaced indices repeat",
    "segments": "segment centres repeat",
}


# --- inputs ---------------------------------------------------------------------------------------
def _check_array(a: np.ndarray) -> np.ndarray:
    if a.ndim != 4 or a.shape[-1] != 3:
        raise VideployError(
            f"a frame array must have shape (T, H, W, 3) (RGB frames), got shape {tuple(a.shape)}; "
            "stack single frames with numpy.stack, and convert OpenCV's BGR with frame[..., ::-1]"
        )
    if a.dtype != np.uint8:
        raise VideployError(
            f"a frame array must be uint8 RGB in [0, 255], got dtype {a.dtype}; "
            "convert with numpy.clip(a, 0, 255).astype(numpy.uint8) (scale floats in [0, 1] by 255 first)"
        )
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise VideployError(f"the frame array is empty (shape {tuple(a.shape)}); it needs at least one frame of at least 1x1 pixels")
    if a.shape[1] * a.shape[2] > MAX_FRAME_PIXELS:
        raise VideployError(f"frames of {a.shape[2]}x{a.shape[1]} pixels exceed the limit of {MAX_FRAME_PIXELS} pixels (8K UHD); downscale them first")
    return a


def _check_path(source: str | os.PathLike) -> Path:
    if str(source) == "-":
        raise VideployError(
            "reading a video from standard input ('-') is not supported: the reader verifies the frame count and may seek, "
            "which needs a file; save the stream to a file first"
        )
    path = Path(source)
    try:
        if not path.exists():
            raise VideployError(f"video {str(path)!r} does not exist; check the path")
        if path.is_dir():
            raise VideployError(f"{str(path)!r} is a directory, not a video file; pass the video files themselves (e.g. {path}/*.mp4)")
        if not path.is_file():
            raise VideployError(f"{str(path)!r} is not a regular file; pass a video file")
        if path.stat().st_size == 0:
            raise VideployError(f"video {str(path)!r} is empty (0 bytes); the file is damaged or was not written completely")
    except OSError as exc:  # name too long, a directory on the way that may not be searched, ...
        raise VideployError(f"cannot access video {str(path)!r}: {exc.strerror or exc}; check the path and its permissions") from None
    if not os.access(path, os.R_OK):
        raise VideployError(f"video {str(path)!r} is not readable; check its permissions")
    return path


# --- decoding -------------------------------------------------------------------------------------
class _Reader:
    """Reads selected frames of one file with cv2.VideoCapture, robust to wrong frame counts."""

    def __init__(self, path: Path):
        self.path = path
        self._link_dir: str | None = None
        self._name = os.path.abspath(path)  # absolute: FFmpeg reads a relative "name:rest" as protocol "name"
        try:
            if _needs_plain_name(self._name):
                self._name = self._plain_link(self._name)
            self._probe()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._link_dir is not None:
            shutil.rmtree(self._link_dir, ignore_errors=True)
            self._link_dir = None

    def _plain_link(self, name: str) -> str:
        """A symlink to ``name`` with a plain path: no pattern characters, valid UTF-8."""
        suffix = Path(name).suffix
        suffix = suffix if suffix[1:].isalnum() else ""  # the suffix still picks the demuxer for images
        try:
            self._link_dir = tempfile.mkdtemp(prefix="videploy-video-")
            link = os.path.join(self._link_dir, "video" + suffix)
            os.symlink(name, link)
        except OSError as exc:
            raise VideployError(
                f"{str(self.path)!r}: OpenCV cannot open this file name as it is ('%' is read as an image-sequence pattern; "
                f"a name that is not valid UTF-8 cannot be passed), and no plain-named link could be made ({exc}); rename the file"
            ) from None
        if _needs_plain_name(link):
            raise VideployError(f"{str(self.path)!r}: OpenCV cannot open this file name as it is (a '%' or invalid UTF-8 in it); rename the file")
        return link

    def _probe(self) -> None:
        cap = self._open()
        try:
            w = _prop_int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            h = _prop_int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        finally:
            cap.release()
        self._check_size(w, h)
        self.size = (h, w)
        self.fps = fps if np.isfinite(fps) and fps > 0 else None
        # The container's claim; negative / NaN / absurd values mean "unknown".
        self.claimed = int(count) if count is not None and np.isfinite(count) and 0 < count < 1e9 else 0

    def _open(self) -> "cv2.VideoCapture":
        cap = cv2.VideoCapture(self._name)
        if not cap.isOpened():
            cap.release()
            raise VideployError(
                f"{str(self.path)!r} is not a video OpenCV can open (unknown format, damaged header, or a truncated file "
                "whose index is missing); check the file plays, or re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
            )
        return cap

    def _check_size(self, w: int, h: int) -> None:
        if w * h > MAX_FRAME_PIXELS:
            raise VideployError(
                f"video {str(self.path)!r} has {w}x{h} frames, more than the limit of {MAX_FRAME_PIXELS} pixels (8K UHD); "
                "downscale it first, e.g. ffmpeg -i IN -vf scale=-2:720 OUT.mp4"
            )

    def read_sampled(
        self,
        pre: Preprocessing,
        clips: int,
        transform: "_FrameTransform",
        seek: bool | None,
        notes: list[str],
        defer: Sequence[int] | None = None,
    ) -> tuple[int, np.ndarray, dict[int, "np.ndarray | RawFrame"]]:
        """(frame count, sampled indices, kept frames). Frames only ``defer`` positions of clip 0 use
        are kept as :class:`RawFrame` (grabbing: decoded, not yet converted or resized) or left out
        (seeking: not decoded at all)."""
        n = self.claimed
        if n > 0:
            idx = sample_indices(pre.sampling, n, pre.num_frames, num_clips=clips, frame_interval=pre.frame_interval)
            wanted = sorted({int(i) for i in idx.ravel()})
            later = _deferred(idx, defer)
            use_seek = seek if seek is not None else _gap(wanted) >= SEEK_MIN_GAP
            got = self._read_seek([i for i in wanted if i not in later], n, transform) if use_seek else self._read_grab(wanted, n, transform, later)
            if got is not None:
                return n, idx, got
            log.info("%s: container frame count %d is wrong; counting frames by decoding", self.path, n)
        # Unknown or wrong count: count by decoding, then read again with the real count.
        true_n = self._count()
        if true_n == 0:
            raise VideployError(
                f"no frame of {str(self.path)!r} could be decoded (the file is empty, truncated before its first frame, "
                "or not a video); check the file plays, or re-encode it"
            )
        if self.claimed > 0 and true_n < self.claimed:
            notes.append(
                f"the file claims {self.claimed} frames but only {true_n} decode (damaged or truncated file, or a wrong header); "
                f"frames were sampled from the {true_n} that decode"
            )
        elif self.claimed > 0 and true_n > self.claimed:
            # containers without a frame index (MPEG-PS/TS, some MKV/WebM) only estimate the count from the duration
            notes.append(
                f"the file claims {self.claimed} frames but {true_n} decode (the container's count is an estimate or wrong); "
                f"frames were sampled from all {true_n}"
            )
        idx = sample_indices(pre.sampling, true_n, pre.num_frames, num_clips=clips, frame_interval=pre.frame_interval)
        wanted = sorted({int(i) for i in idx.ravel()})
        got = self._read_grab(wanted, None, transform, _deferred(idx, defer))
        if got is None or len(got) != len(wanted):  # the file decodes differently on a second pass
            raise VideployError(f"{str(self.path)!r} decodes inconsistently (frames vanish between reads); the file is damaged, re-encode it")
        return true_n, idx, got

    def _read_grab(
        self, wanted: Sequence[int], n: int | None, transform: "_FrameTransform", later: frozenset[int] = frozenset()
    ) -> dict[int, "np.ndarray | RawFrame"] | None:
        """Decode sequentially, converting only ``wanted`` (``later`` ones only retrieved, kept as
        :class:`RawFrame`). With ``n``, also verify the video has exactly n frames."""
        cap = self._open()
        out: dict[int, np.ndarray | RawFrame] = {}
        try:
            last = wanted[-1]
            todo = set(wanted)
            i = raw_bytes = 0
            while i <= last:
                if not cap.grab():
                    return None  # fewer frames than claimed
                if i in todo:
                    ok, frame = cap.retrieve()
                    if not ok or frame is None:
                        return None
                    if i in later and raw_bytes + frame.nbytes <= MAX_RAW_BYTES:
                        out[i] = self._raw(frame, transform)
                        raw_bytes += frame.nbytes
                    else:
                        out[i] = self._keep(frame, transform)
                i += 1
            if n is not None:
                # Verify the count: exactly n frames. The tail after the last wanted frame is short
                # (the samplers' last index is within one interval of the end).
                while i < n:
                    if not cap.grab():
                        return None
                    i += 1
                if cap.grab():
                    return None  # more frames than claimed
            return out
        finally:
            cap.release()

    def _read_seek(self, wanted: Sequence[int], n: int, transform: "_FrameTransform") -> dict[int, np.ndarray] | None:
        """Seek to each wanted frame; verify the count by seeking to frame n - 1. None if anything is off."""
        cap = self._open()
        out: dict[int, np.ndarray] = {}
        try:
            for i in wanted:
                if not cap.set(cv2.CAP_PROP_POS_FRAMES, i) or int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) != i:
                    return None
                ok, frame = cap.read()
                if not ok or frame is None:
                    return None
                out[i] = self._keep(frame, transform)
            if not cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1) or not cap.grab() or cap.grab():
                return None
            return out
        finally:
            cap.release()

    def _count(self) -> int:
        cap = self._open()
        try:
            n = 0
            while cap.grab():
                n += 1
            return n
        finally:
            cap.release()

    def read_leading(self, count: int, short_side: int) -> list[np.ndarray]:
        """The first ``count`` frames (fewer if the video is shorter), RGB, short side scaled down to ``short_side``."""
        cap = self._open()
        out: list[np.ndarray] = []
        try:
            while len(out) < count and cap.grab():
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                rgb = self._rgb(frame)
                h, w = rgb.shape[:2]
                if short_side > 0 and min(h, w) > short_side:
                    s = short_side / min(h, w)
                    rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
                out.append(rgb)
            return out
        finally:
            cap.release()

    def read_one(self, i: int, transform: "_FrameTransform") -> np.ndarray | None:
        """Frame ``i`` (seeking), resized and cropped; None if it cannot be read."""
        cap = self._open()
        try:
            if not cap.set(cv2.CAP_PROP_POS_FRAMES, i) or int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) != i:
                return None
            ok, frame = cap.read()
            return self._keep(frame, transform) if ok and frame is not None else None
        finally:
            cap.release()

    def _raw(self, bgr: np.ndarray, transform: "_FrameTransform") -> "RawFrame":
        self._check_size(bgr.shape[1], bgr.shape[0])
        transform.check(bgr.shape[0], bgr.shape[1])  # refused now, not when a focus step asks for it
        return RawFrame(bgr)

    def _keep(self, bgr: np.ndarray, transform: "_FrameTransform") -> np.ndarray:
        rgb = self._rgb(bgr)
        transform.check(rgb.shape[0], rgb.shape[1])  # frames may differ from the header's size
        return transform.crops(rgb)

    def _rgb(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.ndim == 2:  # some decoders hand out grey frames
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        elif bgr.shape[2] == 4:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
        self._check_size(bgr.shape[1], bgr.shape[0])
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _needs_plain_name(name: str) -> bool:
    """True if OpenCV must not get ``name`` itself: '%' would be expanded as an image-sequence pattern,
    and a name that is not valid UTF-8 (undecodable bytes, kept by Python as surrogates) crashes
    ``cv2.VideoCapture`` (a segmentation fault in OpenCV 5.0's argument conversion)."""
    if any(c in name for c in _PATTERN_CHARS):
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _prop_int(value: float | None) -> int:
    """A size property as int; 0 when the backend does not know it (None, NaN, negative)."""
    return int(value) if value is not None and np.isfinite(value) and value > 0 else 0


@dataclass(frozen=True)
class RawFrame:
    """A decoded frame as OpenCV gave it (BGR, source size), not yet converted, resized or cropped."""

    bgr: np.ndarray


def _deferred(idx: np.ndarray, defer: Sequence[int] | None) -> frozenset[int]:
    """Frame numbers used only by the ``defer`` positions of clip 0 (a frame some other position
    needs now is read now)."""
    if not defer:
        return frozenset()
    later = np.zeros(idx.shape, dtype=bool)
    later[0, np.asarray(list(defer), dtype=np.int64)] = True
    return frozenset(int(i) for i in idx[later]) - frozenset(int(i) for i in idx[~later])


def _gap(wanted: Sequence[int]) -> float:
    if len(wanted) < 2:
        return float(wanted[0]) if wanted else 0.0
    return (wanted[-1] - wanted[0]) / (len(wanted) - 1)


# --- resize / crop / normalise -------------------------------------------------------------------
class _FrameTransform:
    """The spatial pipeline of one preprocessing: resize (right after decoding), crop, normalise.

    Resize and crop follow each family's official library: ``clip`` (mmaction / mmcv) rounds the
    resized long side to nearest and crops at ``(size - crop) // 2``; ``uniform`` and ``segments``
    (torchvision) truncate the long side and crop at ``round((size - crop) / 2)``. Interpolation is
    bilinear (OpenCV ``INTER_LINEAR``, mmcv's choice); when shrinking, ``INTER_AREA`` stands in for the
    anti-aliasing that PIL's bilinear (torchvision on PIL images) applies.
    """

    def __init__(self, pre: Preprocessing, crops: int, what: str = "the video"):
        self.pre = pre
        self.what = what  # for messages
        self.num_crops = crops
        self.crop_h, self.crop_w = pre.crop_size
        self.mmcv = pre.sampling == "clip"
        # (1, 256, 3) float32: entry v of channel c is RGB channel c's value v normalised (the
        # manifest's mean / std are in RGB order whatever order the model takes; see normalise)
        values = np.arange(256, dtype=np.float32)[:, None]
        mean, std = np.asarray(pre.mean, dtype=np.float32), np.asarray(pre.std, dtype=np.float32)
        self._lut = np.ascontiguousarray(((values * np.float32(pre.scale) - mean) / std)[None])

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) after the resize step, for a frame of (h, w)."""
        ch, cw = self.crop_h, self.crop_w
        if self.num_crops == 3:
            # official ThreeCrop: the short side becomes the crop size; cover the crop for non-square crops
            s = max(ch / h, cw / w)
            return max(ch, self._round(h * s)), max(cw, self._round(w * s))
        if self.pre.resize_short == 0:
            return ch, cw
        short = self.pre.resize_short
        if h <= w:
            nh, nw = short, self._long(w, h, short)
        else:
            nh, nw = self._long(h, w, short), short
        # a crop larger than the resized frame (e.g. resize_short < crop) would fail; cover the crop instead
        if nh < ch or nw < cw:
            s = max(ch / nh, cw / nw)
            nh, nw = max(ch, self._round(nh * s)), max(cw, self._round(nw * s))
        return nh, nw

    def _long(self, long: int, short: int, target: int) -> int:
        if self.mmcv:
            return int(long * target / short + 0.5)
        return int(target * long / short)

    def _round(self, x: float) -> int:
        return int(x + 0.5) if self.mmcv else int(x)

    def check(self, h: int, w: int) -> None:
        """Refuse a frame size whose resize would exceed :data:`MAX_FRAME_PIXELS` (extreme aspect ratios)."""
        nh, nw = self.target_size(h, w)
        if nh * nw > MAX_FRAME_PIXELS:
            ratio = max(h, w) / max(1, min(h, w))
            raise VideployError(
                f"{self.what} has {w}x{h} frames, an aspect ratio of {ratio:.0f}:1: resizing them for this model "
                f"would make {nw}x{nh} frames, more than the limit of {MAX_FRAME_PIXELS} pixels; pad (or crop) the video "
                "to a usual aspect ratio first, e.g. ffmpeg -i IN -vf \"pad='max(iw,ih*9/16)':'max(ih,iw*9/16)':-1:-1\" OUT.mp4"
            )

    def crops(self, rgb: np.ndarray) -> np.ndarray:
        """Resize then crop one RGB frame: (crops, crop_h, crop_w, 3) uint8 — all that is kept of it."""
        frame = self.resize(rgb)
        h, w = frame.shape[:2]
        ch, cw = self.crop_h, self.crop_w
        return np.stack([frame[top : top + ch, left : left + cw] for top, left in self.crop_boxes(h, w)])

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        nh, nw = self.target_size(h, w)
        if (nh, nw) == (h, w):
            return np.ascontiguousarray(rgb)
        shrink = nh * nw < h * w
        interp = cv2.INTER_AREA if (shrink and not self.mmcv) else cv2.INTER_LINEAR
        return cv2.resize(rgb, (nw, nh), interpolation=interp)

    def crop_boxes(self, h: int, w: int) -> list[tuple[int, int]]:
        """(top, left) of each crop in a resized frame of (h, w)."""
        ch, cw = self.crop_h, self.crop_w
        if self.num_crops == 1:
            if self.mmcv:
                return [((h - ch) // 2, (w - cw) // 2)]
            return [(int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)))]
        # three crops along the long remaining axis: first, last, middle (mmaction's ThreeCrop order)
        if h - ch >= w - cw:
            step = (h - ch) // 2
            return [(0, (w - cw) // 2), (2 * step, (w - cw) // 2), (step, (w - cw) // 2)]
        step = (w - cw) // 2
        return [((h - ch) // 2, 0), ((h - ch) // 2, 2 * step), ((h - ch) // 2, step)]

    def views(self, idx: np.ndarray, kept: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Normalised views (clips * crops, T, 3, H, W) from the kept crops, and clip 0 / crop 0 for display."""
        clips, T = idx.shape
        k = self.num_crops
        out = np.empty((clips * k, T, 3, self.crop_h, self.crop_w), dtype=np.float32)
        for c in range(clips):
            x = self.normalise(np.stack([kept[int(i)] for i in idx[c]]))  # (T, crops, 3, H, W)
            out[c * k : (c + 1) * k] = x.transpose(1, 0, 2, 3, 4)
        display = np.stack([kept[int(i)][0] for i in idx[0]])
        return out, display

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        """(..., H, W, 3) uint8 RGB crops -> (..., 3, H, W) float32, scaled, mean / std as the manifest says.

        A uint8 channel has 256 values, so the float32 arithmetic ``(v * scale - mean) / std`` is done
        once per value into a table and the frames are looked up (``cv2.LUT``): the same bits as the
        arithmetic over every pixel, at a seventh of its time (48 frames at 224x224: 4.2 vs 34.5 ms),
        which was a third of AdaFocusV3's decode stage. The result is a channels-first view; callers
        copy it once into place.
        """
        if crops.size == 0:
            return np.zeros((*crops.shape[:-3], 3, *crops.shape[-3:-1]), dtype=np.float32)
        flat = np.ascontiguousarray(crops).reshape(-1, crops.shape[-2], 3)
        x = cv2.LUT(flat, self._lut).reshape(*crops.shape)
        if self.pre.channel_order == "BGR":
            x = x[..., ::-1]
        return np.moveaxis(x, -1, -3)

