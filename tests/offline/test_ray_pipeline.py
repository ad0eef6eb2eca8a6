"""The two Ray Data stages as plain functions (no Ray needed): what each row carries, and failures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("pyarrow", reason="the ray extra (pyarrow) is not installed: pip install -e '.[ray]'")

from tests.runtime.toys import ToyStatic, static_bundle
from videploy import runtime
from videploy.errors import VideployError
from videploy.offline.options import PredictOptions
from videploy.offline.ray_pipeline import InferenceActor, decode_batch
from videploy.runtime.samples import write_synthetic_video


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("stages")
    bundle = static_bundle(d / "static", ToyStatic().eval())
    videos = [str(write_synthetic_video(d / f"v{i}.mp4", 10 + 5 * i, (32, 48), pattern="moving")) for i in range(3)]
    (d / "bad.mp4").write_text("not a video")
    return bundle, videos, str(d / "bad.mp4")


def decode(bundle, paths, labels=None):
    pre = runtime.load(bundle, threads=1).manifest.preprocessing
    batch = {"path": np.array(paths, dtype=object), "label": np.array(labels or [""] * len(paths), dtype=object)}
    return decode_batch(batch, preprocessing=pre, num_clips=1, num_crops=1)


def test_decode_then_infer_equals_predict(setup):
    bundle, videos, bad = setup
    batch = decode(bundle, [videos[0], bad, videos[1]], ["walk", "", "run"])
    assert batch["error"][0] == "" and "not a video" in batch["error"][1]
    assert batch["views"][0].shape == (1, 4, 3, 16, 16) and batch["views"][1].size == 0
    table = InferenceActor(str(bundle), PredictOptions(top_k=3), {"threads": 1})(batch)
    rows = table.to_pylist()
    rec = runtime.load(bundle, threads=1)
    for row, path, label in ((rows[0], videos[0], "walk"), (rows[2], videos[1], "run")):
        p = rec.predict(path, top_k=3)
        assert row["path"] == path and row["label"] == label and row["error"] is None
        assert row["top_indices"] == [c.index for c in p.top]
        np.testing.assert_allclose(row["top_probabilities"], [c.probability for c in p.top], rtol=1e-6)
    assert rows[1]["error"] == batch["error"][1] and rows[1]["label"] is None and rows[1]["top_indices"] is None


def refusing(actor: InferenceActor, refused: set[str]) -> InferenceActor:
    """Make the actor's recognizer refuse (VideployError) any batch holding a video of ``refused``."""
    real = actor.rec.predict_batch

    def predict_batch(inputs, **kw):
        inputs = list(inputs)
        bad = [vi.source for vi in inputs if vi.source in refused]
        if bad:
            raise VideployError(f"the backend refuses {bad[0]}")
        return real(inputs, **kw)

    actor.rec.predict_batch = predict_batch
    return actor


def test_a_video_the_backend_refuses_gets_an_error_row(setup):
    bundle, videos, _ = setup
    actor = refusing(InferenceActor(str(bundle), PredictOptions(), {"threads": 1}), {videos[1]})
    rows = actor(decode(bundle, videos)).to_pylist()
    assert rows[0]["error"] is None and rows[2]["error"] is None  # the rest of the batch is kept
    assert rows[1]["error"] == f"the backend refuses {videos[1]}"


def test_a_batch_refused_for_every_video_fails_the_job(setup):
    bundle, videos, _ = setup
    actor = refusing(InferenceActor(str(bundle), PredictOptions(), {"threads": 1}), set(videos))
    with pytest.raises(VideployError, match="the backend refuses"):  # not a video's fault: the videos stay pending
        actor(decode(bundle, videos[:2]))


def test_unexpected_decoder_failures_become_rows(setup, monkeypatch):
    bundle, videos, _ = setup
    import videploy.runtime.video as video

    def boom(*args, **kwargs):
        raise ZeroDivisionError("a decoder bug")

    monkeypatch.setattr(video, "load_video", boom)
    batch = decode(bundle, videos[:1])
    assert "unexpected ZeroDivisionError" in batch["error"][0] and "please report" in batch["error"][0]


def test_metadata_travels_whole(setup):
    bundle, videos, _ = setup
    batch = decode(bundle, videos[:1])
    import pickle

    vi = pickle.loads(batch["meta"][0])
    direct = runtime.load(bundle, threads=1).prepare(videos[0])
    assert dataclasses.replace(vi, views=direct.views, display_frames=None).frame_indices.tolist() == direct.frame_indices.tolist()
    assert vi.display_frames is None and vi.views.size == 0  # the big arrays do not ride in the pickle
    np.testing.assert_array_equal(batch["views"][0], direct.views)
