"""Tiny test-only models that implement the ``videploy.models.base`` contract.

They let the export tests run independently of the real families (and cover cases the real
families must never produce, e.g. a 5-D GridSample). ``TinyClipNet`` is a single-graph model
(registered as family ``video_focalnet`` in its manifest); ``TinyAdaFocus`` has the three
AdaFocusV3 deployment graphs with the contract's I/O names, a crop built from primitive ops and
4-D GridSample, and a per-step classifier gathered by ``step``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from videploy.bundle.manifest import EarlyExit, Preprocessing
from videploy.models.base import GraphModule, VideoModel

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(F.softmax(logits, dim=-1) * F.log_softmax(logits, dim=-1)).sum(-1)


@dataclass(frozen=True)
class TinyClipConfig:
    num_classes: int = 5
    num_frames: int = 4
    img_size: int = 32
    embed_dim: int = 8


class TinyClipNet(VideoModel):
    family = "video_focalnet"
    input_names = ("video",)
    output_names = ("logits",)

    def __init__(self, config: TinyClipConfig = TinyClipConfig()):
        super().__init__()
        self.config = config
        self.conv = nn.Conv2d(3, config.embed_dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(config.embed_dim)
        self.drop = nn.Dropout(0.5)  # must vanish in an eval-mode export
        self.temporal = nn.Conv1d(config.embed_dim, config.embed_dim, 3, padding=1)
        self.head = nn.Linear(config.embed_dim, config.num_classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        x = self.conv(video.flatten(0, 1))  # (B*T, D, h, w)
        x = F.gelu(x).mean((-2, -1)).view(b, t, -1)
        x = self.norm(x)
        x = x + self.temporal(x.transpose(1, 2)).transpose(1, 2)
        return self.head(self.drop(x.mean(1)))

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        c = self.config
        return (torch.randn(batch_size, c.num_frames, 3, c.img_size, c.img_size),)

    def preprocessing(self) -> Preprocessing:
        c = self.config
        return Preprocessing(num_frames=c.num_frames, sampling="clip", crop_size=(c.img_size, c.img_size), resize_short=c.img_size + 4, mean=MEAN, std=STD, frame_interval=2)


@dataclass(frozen=True)
class TinyAdaConfig:
    num_classes: int = 4
    num_segments: int = 6
    glance_indices: tuple[int, ...] = (0, 2, 4)
    num_steps: int = 3
    img_size: int = 32
    patch_size: int = 8
    channels: int = 6
    state_size: int = 12


class TinyGlance(GraphModule):
    input_names = ("frames",)
    output_names = ("logits", "entropy", "global_state", "featmap", "global_feat")

    def __init__(self, c: TinyAdaConfig):
        super().__init__()
        self.c = c
        self.conv = nn.Conv2d(3, c.channels, 3, stride=4, padding=1)
        self.proj = nn.Linear(c.channels, c.state_size)
        self.fc = nn.Linear(c.state_size, c.num_classes)

    def forward(self, frames: torch.Tensor):
        b, t = frames.shape[:2]
        fm = F.relu(self.conv(frames.flatten(0, 1)))
        featmap = fm.view(b, t, *fm.shape[1:])
        global_feat = featmap.mean((-2, -1))
        global_state = F.relu(self.proj(global_feat)).amax(1)
        logits = self.fc(global_state)
        return logits, entropy(logits), global_state, featmap, global_feat

    def example_inputs(self, batch_size: int = 1):
        c = self.c
        return (torch.randn(batch_size, len(c.glance_indices), 3, c.img_size, c.img_size),)


class TinyPolicy(GraphModule):
    input_names = ("featmap", "global_feat")
    output_names = ("frame_indices", "actions", "boxes")

    def __init__(self, c: TinyAdaConfig):
        super().__init__()
        self.c = c
        self.score = nn.Linear(c.channels, c.num_segments)
        self.act = nn.Linear(c.channels, c.num_steps * 4)

    def forward(self, featmap: torch.Tensor, global_feat: torch.Tensor):
        c = self.c
        b = featmap.shape[0]
        scores = self.score(global_feat.mean(1))
        idx = scores.topk(c.num_steps, dim=1).indices.sort(dim=1).values.unsqueeze(-1)
        actions = torch.sigmoid(self.act(featmap.mean((1, 3, 4)))).view(b, c.num_steps, 4)
        size = c.img_size
        half = actions[..., 2:] * 0.5
        y1x1 = (actions[..., :2] - half).clamp(0, 1) * size
        y2x2 = (actions[..., :2] + half).clamp(0, 1) * size
        boxes = torch.stack([y1x1[..., 1], y1x1[..., 0], y2x2[..., 1], y2x2[..., 0]], dim=-1)
        return idx, actions, boxes

    def example_inputs(self, batch_size: int = 1):
        c = self.c
        t = len(c.glance_indices)
        h = (c.img_size + 3) // 4
        return torch.randn(batch_size, t, c.channels, h, h), torch.randn(batch_size, t, c.channels)


class TinyLocal(GraphModule):
    input_names = ("frames", "action", "step", "local_state", "global_state")
    output_names = ("logits", "entropy", "next_local_state")

    def __init__(self, c: TinyAdaConfig, grid_5d: bool = False):
        super().__init__()
        self.c = c
        self.grid_5d = grid_5d
        self.conv = nn.Conv2d(3, c.channels, 3, padding=1)
        self.proj = nn.Linear(c.channels, c.state_size)
        # one classifier per step, stacked so the graph gathers the right one by `step`
        self.heads = nn.Parameter(torch.randn(c.num_steps, c.num_classes, 2 * c.state_size) * 0.1)
        self.register_buffer("base", torch.linspace(-1.0, 1.0, c.patch_size))

    def forward(self, frames, action, step, local_state, global_state):
        b, k = frames.shape[:2]
        p = self.c.patch_size
        centre = action[:, :2] * 2 - 1  # (B, 2) y, x in [-1, 1]
        scale = action[:, 2:]  # (B, 2)
        gy = centre[:, 0:1] + scale[:, 0:1] * self.base  # (B, P)
        gx = centre[:, 1:2] + scale[:, 1:2] * self.base
        grid = torch.stack([gx[:, None, :].expand(b, p, p), gy[:, :, None].expand(b, p, p)], dim=-1)  # (B, P, P, 2)
        grid = grid.repeat_interleave(k, dim=0)
        if self.grid_5d:
            vol = frames.transpose(1, 2)  # (B, 3, K, H, W)
            g5 = grid.view(b, k, p, p, 2)
            g5 = torch.cat([g5, torch.zeros_like(g5[..., :1])], dim=-1)
            patch = F.grid_sample(vol, g5, align_corners=False).transpose(1, 2).flatten(0, 1)
        else:
            patch = F.grid_sample(frames.flatten(0, 1), grid, mode="bilinear", align_corners=False)
        feat = F.relu(self.proj(F.relu(self.conv(patch)).mean((-2, -1)))).view(b, k, -1).amax(1)
        next_state = torch.maximum(local_state, feat)
        w = self.heads[step]  # (B, C, 2S)
        logits = torch.bmm(w, torch.cat([global_state, next_state], dim=1).unsqueeze(-1)).squeeze(-1)
        return logits, entropy(logits), next_state

    def example_inputs(self, batch_size: int = 1):
        c = self.c
        return (
            torch.randn(batch_size, 1, 3, c.img_size, c.img_size),
            torch.rand(batch_size, 4),
            torch.zeros(batch_size, dtype=torch.int64),
            torch.zeros(batch_size, c.state_size),
            torch.rand(batch_size, c.state_size),
        )


class TinyAdaFocus(VideoModel):
    family = "adafocusv3"
    input_names = ("frames",)
    output_names = ("logits",)

    def __init__(self, config: TinyAdaConfig = TinyAdaConfig(), grid_5d: bool = False):
        super().__init__()
        self.config = config
        self.glance = TinyGlance(config)
        self.policy = TinyPolicy(config)
        self.local = TinyLocal(config, grid_5d=grid_5d)

    def deploy_graphs(self):
        return {"glance": self.glance, "policy": self.policy, "local": self.local}

    def example_inputs(self, batch_size: int = 1):
        return self.glance.example_inputs(batch_size)

    def preprocessing(self) -> Preprocessing:
        c = self.config
        return Preprocessing(num_frames=c.num_segments, sampling="segments", crop_size=(c.img_size, c.img_size), resize_short=c.img_size + 4, mean=MEAN, std=STD)

    def early_exit(self) -> EarlyExit:
        c = self.config
        return EarlyExit(
            num_segments=c.num_segments,
            glance_indices=c.glance_indices,
            num_steps=c.num_steps,
            frames_per_cube=1,
            patch_size=c.patch_size,
            exit_gflops=tuple(0.001 * (i + 1) for i in range(c.num_steps + 1)),
            state_size=c.state_size,
        )
