"""Datasets videploy generates itself (torch-free): the default training and demo task."""

from videploy.datasets.actions import CLASSES, DEFAULT_SPLITS, ActionVideoSpec, generate, read_boxes, read_split, render_clip

__all__ = ["CLASSES", "DEFAULT_SPLITS", "ActionVideoSpec", "generate", "read_boxes", "read_split", "render_clip"]
