"""The results directory: Parquet shards written atomically, which are also the resume checkpoint.

OUT is a directory of ``part-<run>-<n>.parquet`` files, one row per video (:func:`schema`). Read it
with ``pandas.read_parquet(OUT)`` or ``pyarrow.parquet.read_table(OUT)`` (both skip the hidden
``.lock`` and temporary files) or :func:`read_results`.

Crash safety. A shard is written under a hidden temporary name, flushed to disk, then renamed into
place (``os.replace``, atomic on POSIX): a shard either exists whole or not at all. A crash, a
killed job or a pre-empted node loses at most the rows not yet in a shard; the next run with the
same OUT reads the ``path`` column of the finished shards, predicts only the other videos and
deletes leftover temporary files. A video is never written twice: the writer also drops any row
whose path is already in OUT or was written earlier in the run. Videos that failed (a row with
``error``) count as done; to retry them, list them in a CSV and run into a new OUT.

A lock file (``OUT/.lock``, an advisory ``flock``) stops a second run from writing into the same
OUT at the same time. Every shard carries the run's settings (model, top-k, views, thresholds,
precision) in its Parquet metadata; resuming with other settings is refused, so one table never
mixes two models.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from videploy import jsonsafe
from videploy.errors import VideployError
from videploy.optional import require

log = logging.getLogger(__name__)

SHARD_GLOB = "part-*.parquet"
METADATA_KEY = b"videploy.run"
# Settings that must match for a run to add rows to an existing OUT.
RESUME_KEYS = ("model", "family", "top_k", "views", "thresholds", "precision")
_TMP_PREFIX = ".tmp-"
_LOCK_NAME = ".lock"


def _pa() -> Any:
    return require("pyarrow", "writing predict-dataset results (Parquet)")


def schema() -> Any:
    """The Parquet schema of a result row (a ``pyarrow.Schema``)."""
    pa = _pa()
    cube = pa.struct([("step", pa.int32()), ("frames", pa.list_(pa.int64())), ("box_xyxy", pa.list_(pa.float64()))])
    return pa.schema(
        [
            ("path", pa.string()),  # absolute path, the resume key
            ("label", pa.string()),  # ground truth from a CSV, else null
            ("error", pa.string()),  # why the video has no prediction, else null
            ("top_indices", pa.list_(pa.int32())),  # most probable first
            ("top_labels", pa.list_(pa.string())),  # class names (null without a label file)
            ("top_probabilities", pa.list_(pa.float64())),
            ("num_frames", pa.int64()),  # frames in the video
            ("frame_indices", pa.list_(pa.list_(pa.int64()))),  # sampled frames per clip
            ("gflops", pa.float64()),  # compute spent on this video
            ("exit_step", pa.int32()),  # AdaFocusV3: 0 = glance only, t = after t local steps
            ("num_steps", pa.int32()),  # AdaFocusV3: the most it could take
            ("full_gflops", pa.float64()),  # AdaFocusV3: cost had it run every step
            ("cubes", pa.list_(cube)),  # AdaFocusV3: where and when it looked
            ("notes", pa.list_(pa.string())),  # fallbacks the runtime took (short video, recount, ...)
            ("decode_s", pa.float64()),  # decode + preprocess time of this video
            ("infer_s", pa.float64()),  # its share of the inference call it was batched in
            ("finished_at", pa.float64()),  # UNIX time that call returned (throughput over time, stragglers)
        ]
    )


def prediction_row(pred: Any, label: str | None, decode_s: float, infer_s: float, path: str | None = None) -> dict[str, Any]:
    """One row from a runtime ``Prediction``."""
    a = pred.adaptive
    return {
        "path": path if path is not None else pred.source,
        "label": label,
        "error": None,
        "top_indices": [c.index for c in pred.top],
        "top_labels": [c.label for c in pred.top],
        "top_probabilities": [c.probability for c in pred.top],
        "num_frames": pred.num_frames,
        "frame_indices": [[int(i) for i in clip] for clip in pred.frame_indices],
        "gflops": pred.gflops,
        "exit_step": a.exit_step if a is not None else None,
        "num_steps": a.num_steps if a is not None else None,
        "full_gflops": a.full_gflops if a is not None else None,
        "cubes": [{"step": c.step, "frames": list(c.frames), "box_xyxy": list(c.box)} for c in a.cubes] if a is not None else None,
        "notes": list(pred.notes),
        "decode_s": decode_s,
        "infer_s": infer_s,
    }


def error_row(path: str, label: str | None, error: str, decode_s: float | None = None) -> dict[str, Any]:
    """One row for a video without a prediction (damaged, unreadable, ...)."""
    row = dict.fromkeys(schema().names)
    row.update(path=path, label=label, error=error, decode_s=decode_s)
    return row


def rows_to_table(rows: list[dict[str, Any]]) -> Any:
    return _pa().Table.from_pylist(rows, schema=schema())


class ShardWriter:
    """Writes result tables into ``out_dir`` as atomic Parquet shards; knows which videos are done.

    Use as a context manager (it holds the directory's lock). ``run_info`` is stored in every shard
    and checked against the shards already there (:data:`RESUME_KEYS`). Rows are buffered and
    written as a shard when ``shard_rows`` rows are waiting or ``shard_seconds`` have passed since
    the last shard, and at :meth:`flush` / exit.
    """

    def __init__(self, out_dir: str | os.PathLike, run_info: Mapping[str, Any], shard_rows: int = 1000, shard_seconds: float = 60.0):
        if shard_rows < 1:
            raise VideployError(f"shard rows must be >= 1, got {shard_rows}")
        if not shard_seconds > 0:
            raise VideployError(f"shard seconds must be > 0, got {shard_seconds}")
        self.out_dir = Path(out_dir)
        self.run_info = dict(run_info)
        self.shard_rows = int(shard_rows)
        self.shard_seconds = float(shard_seconds)
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.shards_written: list[Path] = []
        self.rows_written = 0
        self.errors_written = 0
        self.duplicates_dropped = 0
        self._lock_fd: int | None = None
        self._buffer: list[Any] = []
        self._buffered = 0
        self._buffered_paths: set[str] = set()
        self._last_flush = time.monotonic()
        self.done: set[str] = set()

    # --- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> "ShardWriter":
        self.open()
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            if exc_type is None:
                self.flush()
            else:
                try:  # the buffered rows are finished results: keep them for the resume (Ctrl-C, a failed job)
                    self.flush()
                except Exception as exc:  # the original error is the one to report
                    log.warning("could not write the last %d result rows (%s); a re-run predicts them again", self._buffered, exc)
        finally:
            self.close()

    def open(self) -> None:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise VideployError(f"output {str(self.out_dir)!r} exists and is not a directory; predict-dataset writes a directory of Parquet shards")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideployError(f"cannot create output directory {str(self.out_dir)!r}: {exc.strerror or exc}") from None
        self._lock()
        for stale in self.out_dir.glob(_TMP_PREFIX + "*"):
            # a shard a crashed run did not finish: its videos are not in `done`, so they run again
            stale.unlink(missing_ok=True)
        self.done = set(done_paths(self.out_dir, expect=self.run_info))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no advisory locks, documented as POSIX-only
            return
        fd = os.open(self.out_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise VideployError(
                f"another predict-dataset run is writing to {str(self.out_dir)!r} (its .lock is held); wait for it, or write to another directory"
            ) from None
        self._lock_fd = fd

    # --- writing ----------------------------------------------------------------------------------
    def add(self, table: Any) -> None:
        """Buffer a result table (schema :func:`schema`); writes a shard when one is due."""
        table = self._new_rows(table)
        if table.num_rows:
            self._buffer.append(table)
            self._buffered += table.num_rows
        if self._buffered >= self.shard_rows or (self._buffered and time.monotonic() - self._last_flush >= self.shard_seconds):
            self.flush()

    def flush(self) -> Path | None:
        """Write the buffered rows as one shard (atomically); returns its path, or None if nothing was buffered."""
        if not self._buffered:
            return None
        pa = _pa()
        table = pa.concat_tables(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        path = self._write(table)
        self.done.update(self._buffered_paths)
        self._buffered_paths.clear()
        self.rows_written += table.num_rows
        self.errors_written += table.num_rows - table.column("error").null_count
        self.shards_written.append(path)
        self._last_flush = time.monotonic()
        return path

    def _new_rows(self, table: Any) -> Any:
        pc = require("pyarrow.compute", "writing predict-dataset results (Parquet)")
        pa = _pa()
        keep = []
        for p in table.column("path").to_pylist():
            # rows still in the buffer are not in `done` yet: they count as written too
            fresh = p not in self.done and p not in self._buffered_paths
            keep.append(fresh)
            self._buffered_paths.add(p)
        dropped = len(keep) - sum(keep)
        if dropped:
            self.duplicates_dropped += dropped
            log.warning("dropped %d result row(s) for videos already written", dropped)
            table = pc.filter(table, pa.array(keep, type=pa.bool_()))
        return table.cast(schema())

    def _write(self, table: Any) -> Path:
        pq = require("pyarrow.parquet", "writing predict-dataset results (Parquet)")
        name = f"part-{self.run_id}-{len(self.shards_written):06d}.parquet"
        final = self.out_dir / name
        tmp = self.out_dir / f"{_TMP_PREFIX}{name}"
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY] = jsonsafe.dumps(self.run_info, sort_keys=True).encode()
        try:
            pq.write_table(table.replace_schema_metadata(meta), tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.out_dir)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise VideployError(f"cannot write results to {str(final)!r}: {exc.strerror or exc}; check free space and permissions") from None
        return final


def shard_paths(out_dir: str | os.PathLike) -> list[Path]:
    return sorted(Path(out_dir).glob(SHARD_GLOB))


def done_paths(out_dir: str | os.PathLike, expect: Mapping[str, Any] | None = None) -> list[str]:
    """Paths of every video with a row in ``out_dir``; with ``expect``, check the shards' run settings match."""
    pq = require("pyarrow.parquet", "reading predict-dataset results (Parquet)")
    out: list[str] = []
    for shard in shard_paths(out_dir):
        try:
            meta = pq.read_schema(shard).metadata or {}
            paths = pq.read_table(shard, columns=["path"]).column("path").to_pylist()
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that is not Parquet
            raise VideployError(
                f"{str(shard)!r} is not a readable results shard ({exc}); it was not written by predict-dataset. Move it out of the output directory"
            ) from None
        if expect is not None:
            _check_same_run(shard, meta.get(METADATA_KEY), expect)
        out.extend(paths)
    return out


def _check_same_run(shard: Path, raw: bytes | None, expect: Mapping[str, Any]) -> None:
    if raw is None:
        raise VideployError(f"{str(shard)!r} has no predict-dataset run metadata; it was not written by predict-dataset. Move it out of the output directory")
    old = json.loads(raw)
    for key in RESUME_KEYS:
        if old.get(key) != expect.get(key):
            raise VideployError(
                f"{str(shard.parent)!r} already holds results made with {key}={old.get(key)!r}, but this run has {key}={expect.get(key)!r}; "
                "resuming would mix two settings in one table: pass the same options, or write to a new output directory"
            )


def read_results(out_dir: str | os.PathLike) -> Any:
    """All rows in ``out_dir`` as a ``pandas.DataFrame``."""
    pq = require("pyarrow.parquet", "reading predict-dataset results (Parquet)")
    require("pandas", "reading predict-dataset results into a DataFrame")
    shards = shard_paths(out_dir)
    if not shards:
        return _pa().Table.from_pylist([], schema=schema()).to_pandas()
    return _pa().concat_tables([pq.read_table(s) for s in shards]).to_pandas()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - some file systems do not open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
