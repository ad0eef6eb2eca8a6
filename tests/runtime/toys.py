"""Tiny models that follow the deployment graph contracts, and bundles of them, for runtime tests.

The runtime must not care which network is inside a graph, only that names, shapes and the
AdaFocusV3 protocol (glance -> policy -> local steps with per-row ``step``) hold. These toys are
small enough to export in milliseconds (TorchScript exporter) and make every code path of the
runtime reachable: frame order matters to the static toy (so sampling errors change the logits),
the policy picks data-dependent frames and boxes, and exits happen at every step for some video.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from videploy.bundle.manifest import (
    BatchRange,
    EarlyExit,
    GraphSpec,
    Manifest,
    Preprocessing,
    TensorSpec,
    write_manifest,
)
from videploy.models.base import GraphModule, VideoModel

SIZE = 16  # crop size of every toy
MEAN = (0.45, 0.45, 0.45)
STD = (0.25, 0.25, 0.25)


def _pool2(x: torch.Tensor) -> torch.Tensor:
    """(N, C, SIZE, SIZE) -> (N, C, 2, 2) block means (explicit, so the exporter sees static shapes)."""
    n, c = x.shape[0], x.shape[1]
    return x.reshape(n, c, 2, SIZE // 2, 2, SIZE // 2).mean(dim=(3, 5))


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(F.softmax(logits, dim=-1) * F.log_softmax(logits, dim=-1)).sum(dim=-1)


class ToyStatic(VideoModel):
    """video (B, T, 3, H, W) -> logits: a linear layer on per-frame channel means (frame order matters)."""

    family: ClassVar[str] = "video_focalnet"
    input_names = ("video",)
    output_names = ("logits",)

    def __init__(self, num_frames: int = 4, num_classes: int = 7, sampling: str = "clip", seed: int = 0):
        super().__init__()
        self.T, self.C, self.sampling = num_frames, num_classes, sampling
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(num_frames * 3 * 4, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g) * 2.0)
            self.fc.bias.copy_(torch.randn(self.fc.bias.shape, generator=g))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        pooled = _pool2(video.flatten(0, 1)).reshape(b, -1)  # (B, T*3*4)
        return self.fc(pooled)

    def example_inputs(self, batch_size: int = 1):
        return (torch.randn(batch_size, self.T, 3, SIZE, SIZE),)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(num_frames=self.T, sampling=self.sampling, crop_size=(SIZE, SIZE), resize_short=18, mean=MEAN, std=STD, num_clips=2, num_crops=3)


# --- a toy AdaFocusV3 ---------------------------------------------------------------------------
S, TG, TF, K, D, C_FEAT, MAP = 6, 3, 3, 1, 16, 5, 2
GLANCE_INDICES = (0, 2, 4)


class ToyGlance(GraphModule):
    input_names = ("frames",)
    output_names = ("logits", "entropy", "global_state", "featmap", "global_feat")

    def __init__(self, parent: "ToyAdaFocus"):
        super().__init__()
        self.p = parent

    def forward(self, frames):
        b = frames.shape[0]
        fm = _pool2(frames.flatten(0, 1))  # (B*Tg, 3, 2, 2)
        fm = torch.cat([fm, fm[:, :2] * fm[:, 1:3]], dim=1).reshape(b, TG, C_FEAT, MAP, MAP)
        gf = fm.mean(dim=(3, 4))  # (B, Tg, C_FEAT)
        state = F.relu(self.p.g_mlp(gf.reshape(b, -1)))
        logits = self.p.g_head(state)
        return logits, _entropy(logits), state, fm, gf


class ToyPolicy(GraphModule):
    input_names = ("featmap", "global_feat")
    output_names = ("frame_indices", "actions", "boxes")

    def __init__(self, parent: "ToyAdaFocus"):
        super().__init__()
        self.p = parent

    def forward(self, featmap, global_feat):
        b = featmap.shape[0]
        z = torch.cat([global_feat.reshape(b, -1), featmap.reshape(b, -1)], dim=1)
        scores = self.p.when(z)  # (B, S)
        idx = torch.topk(scores, TF, dim=1).indices  # data-dependent, distinct frames
        actions = torch.sigmoid(self.p.where(z)).reshape(b, TF, 4)
        patch = SIZE / 2.0
        x1 = actions[..., 1] * (SIZE - patch)
        y1 = actions[..., 0] * (SIZE - patch)
        boxes = torch.stack([x1, y1, x1 + patch, y1 + patch], dim=-1)
        return idx.unsqueeze(-1), actions, boxes


class ToyLocal(GraphModule):
    input_names = ("frames", "action", "step", "local_state", "global_state")
    output_names = ("logits", "entropy", "next_local_state")

    def __init__(self, parent: "ToyAdaFocus"):
        super().__init__()
        self.p = parent

    def forward(self, frames, action, step, local_state, global_state):
        b = frames.shape[0]
        pooled = _pool2(frames.flatten(0, 1)).reshape(b, -1)  # (B, K*3*4)
        z = F.relu(self.p.l_mlp(torch.cat([pooled, action], dim=1)))
        state = torch.maximum(z, local_state)
        w = self.p.l_heads[step]  # (B, 2D, C): each row its own step's head
        feat = torch.cat([state, global_state], dim=1).unsqueeze(1)
        logits = torch.bmm(feat, w).squeeze(1) + self.p.l_bias[step]
        return logits, _entropy(logits), state


class ToyAdaFocus(VideoModel):
    family: ClassVar[str] = "adafocusv3"
    input_names = ("video",)
    output_names = ("logits",)

    def __init__(self, num_classes: int = 7, seed: int = 0, logit_scale: float = 3.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.C = num_classes
        self.g_mlp = nn.Linear(TG * C_FEAT, D)
        self.g_head = nn.Linear(D, num_classes)
        self.when = nn.Linear(TG * C_FEAT * (1 + MAP * MAP), S)
        self.where = nn.Linear(TG * C_FEAT * (1 + MAP * MAP), TF * 4)
        self.l_mlp = nn.Linear(K * 12 + 4, D)
        self.l_heads = nn.Parameter(torch.randn(TF, 2 * D, num_classes, generator=g) * logit_scale / D)
        self.l_bias = nn.Parameter(torch.randn(TF, num_classes, generator=g) * 0.1)
        with torch.no_grad():
            for lin in (self.g_mlp, self.g_head, self.when, self.where, self.l_mlp):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * (logit_scale if lin is self.g_head else 1.0))
                lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.1)

    def deploy_graphs(self):
        return {"glance": ToyGlance(self), "policy": ToyPolicy(self), "local": ToyLocal(self)}

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(num_frames=S, sampling="segments", crop_size=(SIZE, SIZE), resize_short=18, mean=MEAN, std=STD)

    def full_exits(self, video: torch.Tensor) -> torch.Tensor:
        """Logits of every exit (B, Tf+1, C), computed directly (no runtime): the reference."""
        gr = self.deploy_graphs()
        with torch.no_grad():
            logits0, _, gs, fm, gf = gr["glance"](video[:, list(GLANCE_INDICES)])
            idx, actions, _ = gr["policy"](fm, gf)
            out = [logits0]
            ls = torch.zeros(video.shape[0], D)
            for t in range(TF):
                frames = torch.stack([video[b, idx[b, t]] for b in range(video.shape[0])])
                step = torch.full((video.shape[0],), t, dtype=torch.int64)
                lg, _, ls = gr["local"](frames, actions[:, t], step, ls, gs)
                out.append(lg)
        return torch.stack(out, dim=1)


EXIT_GFLOPS = (0.5, 1.25, 2.0, 2.75)


# --- bundles ------------------------------------------------------------------------------------
def _export(module: nn.Module, inputs: tuple, path: Path, in_names, out_names) -> None:
    dyn = {n: {0: "batch"} for n in (*in_names, *out_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), inputs, str(path), input_names=list(in_names), output_names=list(out_names), dynamic_axes=dyn, dynamo=False, opset_version=17)


def _spec(name: str, t: torch.Tensor) -> TensorSpec:
    dtype = {torch.float32: "float32", torch.int64: "int64"}[t.dtype]
    return TensorSpec(name, ("batch", *t.shape[1:]), dtype)


def _graph(role: str, module: GraphModule, inputs: tuple, bundle: Path, gflops: float) -> GraphSpec:
    with torch.no_grad():
        outs = module(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    _export(module, inputs, bundle / f"{role}.onnx", module.input_names, module.output_names)
    return GraphSpec(
        role=role,
        file=f"{role}.onnx",
        inputs=tuple(_spec(n, t) for n, t in zip(module.input_names, inputs)),
        outputs=tuple(_spec(n, t) for n, t in zip(module.output_names, outs)),
        gflops=gflops,
    )


def static_bundle(path: Path, model: ToyStatic, batch: BatchRange = BatchRange(1, 2, 8), labels: list[str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    g = _graph("main", model, model.example_inputs(2), path, 0.01)
    label_file = None
    if labels is not None:
        (path / "labels.txt").write_text("\n".join(labels) + "\n")
        label_file = "labels.txt"
    m = Manifest(
        family=model.family, model_name="toy_static", config={}, num_classes=model.C, preprocessing=model.preprocessing(),
        graphs=(g,), batch=batch, gflops_per_view=0.01, labels=label_file, weights=None,
    )
    write_manifest(path, m)
    return path


def adaptive_bundle(path: Path, model: ToyAdaFocus, batch: BatchRange = BatchRange(1, 4, 8), thresholds=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    gr = model.deploy_graphs()
    frames = torch.randn(2, TG, 3, SIZE, SIZE)
    with torch.no_grad():
        _, _, gs, fm, gf = gr["glance"](frames)
    local_in = (torch.randn(2, K, 3, SIZE, SIZE), torch.rand(2, 4), torch.tensor([0, TF - 1]), torch.rand(2, D), gs)
    graphs = (
        _graph("glance", gr["glance"], (frames,), path, EXIT_GFLOPS[0]),
        _graph("policy", gr["policy"], (fm, gf), path, 0.0),
        _graph("local", gr["local"], local_in, path, EXIT_GFLOPS[2] - EXIT_GFLOPS[1]),
    )
    ee = EarlyExit(
        num_segments=S, glance_indices=GLANCE_INDICES, num_steps=TF, frames_per_cube=K, patch_size=SIZE // 2,
        exit_gflops=EXIT_GFLOPS, thresholds=None if thresholds is None else tuple(thresholds), state_size=D,
    )
    m = Manifest(
        family="adafocusv3", model_name="toy_adafocus", config={}, num_classes=model.C, preprocessing=model.preprocessing(),
        graphs=graphs, batch=batch, early_exit=ee, weights={"file": "toy.pth", "sha256": "0" * 64},
    )
    write_manifest(path, m)
    return path
