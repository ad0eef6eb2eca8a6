from __future__ import annotations

import pytest

from videploy.datasets import actions

SMALL = actions.ActionVideoSpec(size=64, num_frames=16, actor_radius=(5.0, 6.0), num_distractors=(2, 3))

# Tiny AdaFocusV3 for tests: 64 px frames, 32 px glance, 32 px patches.
TINY_ADAFOCUS = dict(
    num_segments=8,
    num_glance_segments=2,
    num_focus_segments=3,
    num_classes=10,
    input_size=64,
    patch_size=32,
    stn_hidden_dim=8,
    temporal_hidden_dim=8,
    glance_width_mult=0.25,
    glance_size=64,
    local_block="BasicBlock",
    local_layers=(1, 1, 1, 1),
    local_width=8,
    mlp_width=16,
    min_patch_pixels=32,
    max_patch_pixels=48,
)


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory):
    """A handful of generated clips: train 10, val 10 (one per class each)."""
    root = tmp_path_factory.mktemp("actions")
    actions.generate(root, {"train": 10, "val": 10}, seed=0, spec=SMALL)
    return root
