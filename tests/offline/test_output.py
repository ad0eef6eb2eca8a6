"""Parquet shards: atomic, the resume checkpoint, never a video twice, one run's settings (no Ray needed)."""

from __future__ import annotations

import pytest

pa = pytest.importorskip("pyarrow", reason="the ray extra (pyarrow) is not installed: pip install -e '.[ray]'")
pq = pytest.importorskip("pyarrow.parquet")

from videploy.errors import VideployError
from videploy.offline.output import (
    METADATA_KEY,
    ShardWriter,
    done_paths,
    error_row,
    read_results,
    rows_to_table,
    shard_paths,
)

INFO = {"model": "toy", "family": "video_focalnet", "top_k": 5, "views": "1x1", "thresholds": None, "precision": None}


def table(*paths: str):
    return rows_to_table([error_row(p, None, "e") for p in paths])


def test_shards_are_written_every_n_rows_and_hold_the_settings(tmp_path):
    with ShardWriter(tmp_path / "out", INFO, shard_rows=2) as w:
        w.add(table("/a"))
        assert shard_paths(tmp_path / "out") == []  # buffered: fewer than shard_rows
        w.add(table("/b", "/c"))
        assert len(shard_paths(tmp_path / "out")) == 1
        w.add(table("/d"))
    shards = shard_paths(tmp_path / "out")
    assert len(shards) == 2 and w.rows_written == 4 and w.errors_written == 4  # the last at exit
    assert b'"model": "toy"' in pq.read_schema(shards[0]).metadata[METADATA_KEY]
    assert sorted(done_paths(tmp_path / "out")) == ["/a", "/b", "/c", "/d"]
    df = read_results(tmp_path / "out")
    assert sorted(df.path) == ["/a", "/b", "/c", "/d"] and set(df.error) == {"e"}


def test_a_video_is_never_written_twice(tmp_path):
    out = tmp_path / "out"
    with ShardWriter(out, INFO, shard_rows=10) as w:
        w.add(table("/a", "/b"))
    with ShardWriter(out, INFO, shard_rows=10) as w:
        assert w.done == {"/a", "/b"}
        w.add(table("/a", "/c", "/c"))  # already in OUT, and twice in one batch
        w.add(table("/c", "/d"))  # already buffered in this run
    assert sorted(read_results(out).path) == ["/a", "/b", "/c", "/d"]
    assert w.duplicates_dropped == 3


def test_a_crash_leaves_no_half_shard_and_the_next_run_cleans_up(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with ShardWriter(out, INFO, shard_rows=1) as w:
        w.add(table("/a"))
    real = pq.write_table

    def crash(tbl, where, **kw):  # the process dies while writing: a partial temporary file
        real(tbl, where, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(out, INFO, shard_rows=1) as w:
            w.add(table("/b"))
    monkeypatch.setattr(pq, "write_table", real)
    assert [p.name.startswith(".tmp-") for p in out.iterdir() if p.name != ".lock"].count(True) == 1
    assert done_paths(out) == ["/a"]  # the unfinished shard is not a result
    assert sorted(read_results(out).path) == ["/a"]
    import pandas as pd

    assert list(pd.read_parquet(out).path) == ["/a"]  # pandas skips the hidden files too
    with ShardWriter(out, INFO) as w:
        assert w.done == {"/a"}
    assert not any(p.name.startswith(".tmp-") for p in out.iterdir())


def test_resuming_with_other_settings_is_refused(tmp_path):
    with ShardWriter(tmp_path / "out", INFO, shard_rows=1) as w:
        w.add(table("/a"))
    with pytest.raises(VideployError, match="top_k=5, but this run has top_k=3"):
        ShardWriter(tmp_path / "out", {**INFO, "top_k": 3}).open()


def test_two_runs_cannot_write_one_output(tmp_path):
    with ShardWriter(tmp_path / "out", INFO):
        with pytest.raises(VideployError, match="another predict-dataset run"):
            ShardWriter(tmp_path / "out", INFO).open()
    again = ShardWriter(tmp_path / "out", INFO)
    again.open()  # released at exit
    again.close()


def test_foreign_files_are_named(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part-x.parquet").write_text("not parquet")
    with pytest.raises(VideployError, match="part-x.parquet.*not a readable results shard"):
        ShardWriter(tmp_path / "out", INFO).open()
    (tmp_path / "file").write_text("x")
    with pytest.raises(VideployError, match="not a directory"):
        ShardWriter(tmp_path / "file", INFO).open()


def test_finished_rows_are_kept_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / "out", INFO, shard_rows=100) as w:
            w.add(table("/a", "/b"))
            raise RuntimeError("the job failed (or Ctrl-C) with rows still buffered")
    assert sorted(done_paths(tmp_path / "out")) == ["/a", "/b"]
