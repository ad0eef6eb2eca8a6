"""Training smoke tests: a few steps on a handful of generated clips; the loss goes down, the
checkpoint and the weights load, and the trained model exports to a bundle whose predictions
print class names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import videploy.models as vm
from videploy.training import checkpoints
from videploy.training.run import train_model

from .conftest import TINY_ADAFOCUS

TINY_STAM = dict(img_size=32, patch_size=16, embed_dim=16, depth=1, num_heads=2, aggregate={"clip_length": 4, "embed_dim": 16, "n_layers": 1})


def _run(tmp_path, tiny_videos, name, overrides, epochs, stop_after=None, augment=False):
    return train_model(
        name,
        tmp_path / "run",
        train_csv=tiny_videos / "train.csv",
        val_csv=tiny_videos / "val.csv",
        labels=tiny_videos / "labels.txt",
        epochs=epochs,
        batch_size=5,
        overrides=overrides,
        progress=False,
        stop_after=stop_after,
        augment=augment,  # on ten clips, "the loss goes down" needs the same examples every epoch
    )


def test_adafocusv3_trains_saves_resumes_and_exports(tmp_path, tiny_videos):
    result = _run(tmp_path, tiny_videos, "adafocusv3", TINY_ADAFOCUS, epochs=4)  # 3 epochs stage 1, 1 of stage 2
    losses = result.losses
    assert len(losses) == 4 and losses[2] < losses[0]  # stage 1 learns
    val = result.metrics["val"]
    assert len(val["exit_accuracy"]) == TINY_ADAFOCUS["num_focus_segments"] + 1
    # the checkpoint is resumable and load_checkpoint reads it
    state = checkpoints.read_training_checkpoint(result.checkpoint)
    assert state["progress"] == {"stage": 2, "epoch": 1, "loss": pytest.approx(losses[-1])}
    model = vm.create("adafocusv3", **TINY_ADAFOCUS)
    vm.load_checkpoint(model, result.checkpoint)
    again = vm.create("adafocusv3", **TINY_ADAFOCUS)
    meta = checkpoints.load_weights(again, result.weights)
    assert json.loads(meta["labels"])[1] == "move_left"
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k

    from videploy.export import export_bundle
    from videploy.runtime import load

    bundle = tmp_path / "bundle"
    video = tiny_videos / (tiny_videos / "val.csv").read_text().splitlines()[1].split(",")[0]
    export_bundle(again.eval(), bundle, labels=tiny_videos / "labels.txt", name="adafocusv3", video=video, verify_batch_sizes=(1,))
    pred = load(bundle).predict(str(video), top_k=3)
    assert pred.to_dict()["top"][0]["label"] in set((tiny_videos / "labels.txt").read_text().split())


def test_resume_continues_to_the_same_weights(tmp_path, tiny_videos):
    # with augmentation: its random choices must resume exactly too
    full = _run(tmp_path / "a", tiny_videos, "stam", TINY_STAM, epochs=2, augment=True)
    first = _run(tmp_path / "b", tiny_videos, "stam", TINY_STAM, epochs=2, stop_after=1, augment=True)  # interrupted
    assert len(first.losses) == 1 and first.losses[0] == pytest.approx(full.losses[0])
    resumed = train_model(
        "stam", tmp_path / "b" / "run", train_csv=tiny_videos / "train.csv", val_csv=tiny_videos / "val.csv",
        labels=tiny_videos / "labels.txt", epochs=2, batch_size=5, overrides=TINY_STAM, progress=False, resume=True, augment=True,
    )
    assert len(resumed.losses) == 1 and resumed.losses[0] == pytest.approx(full.losses[1], rel=1e-5)
    a, _ = checkpoints.read_weights(full.weights)
    b, _ = checkpoints.read_weights(resumed.weights)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_classifier_loss_goes_down(tmp_path, tiny_videos):
    result = _run(tmp_path, tiny_videos, "stam", TINY_STAM, epochs=6)
    assert result.losses[-1] < result.losses[0]
    assert 0.0 <= result.metrics["val"]["accuracy"] <= 1.0
    assert np.isfinite(result.losses).all()
