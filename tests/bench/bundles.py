"""Bundles for the benchmark tests, made in about a second.

``tiny_focalnet_bundle``: a real Video-FocalNet (registry family ``video_focalnet``) at a tiny
configuration with export's seeded random initialisation, so the PyTorch reference backend can
rebuild it from the manifest exactly as it does for a ``videploy export`` bundle without weights.
It is exported with the TorchScript exporter and without verification (which is what makes it
fast); the bench tests compare speeds, and parity is the export tests' business.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from videploy.bundle.manifest import (
    BatchRange,
    GraphSpec,
    Manifest,
    TensorSpec,
    write_manifest,
)

TINY_FOCALNET = dict(img_size=32, embed_dim=8, depths=[1, 1, 1, 1], num_frames=2, num_classes=5)


def tiny_focalnet_bundle(path: Path, batch: BatchRange | None = None) -> Path:
    from videploy.export.torch_backend import RANDOM_INIT_SEED
    from videploy.models import create

    torch.manual_seed(RANDOM_INIT_SEED)
    model = create("video_focalnet", **TINY_FOCALNET).eval()
    path.mkdir(parents=True, exist_ok=True)
    (video,) = model.example_inputs(2)
    with torch.no_grad():
        logits = model(video)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (video,), str(path / "main.onnx"), input_names=["video"], output_names=["logits"],
            dynamic_axes={"video": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False, opset_version=17,
        )
    graph = GraphSpec(
        role="main",
        file="main.onnx",
        inputs=(TensorSpec("video", ("batch", *video.shape[1:]), "float32"),),
        outputs=(TensorSpec("logits", ("batch", *logits.shape[1:]), "float32"),),
        gflops=0.01,
    )
    m = Manifest(
        family="video_focalnet", model_name="tiny_focalnet", config=model.official_kwargs(), num_classes=model.num_classes,
        preprocessing=model.preprocessing(), graphs=(graph,), batch=batch or BatchRange(1, 2, 4), gflops_per_view=0.01, weights=None,
    )
    write_manifest(path, m)
    return path
