"""Bundles shared across the export tests (exporting is the slow part: export once, test many things)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.export.tiny_models import TinyAdaFocus, TinyClipNet


def small_overrides(name: str) -> dict[str, Any]:
    """A small configuration of zoo / family ``name`` (official keyword names), sized for 2 CPU cores.

    Widths and depths shrink; what tells the zoo entries of a family apart beyond that (STAM's
    clip length) is kept.
    """
    from videploy.models import get

    entry = get(name)
    family = entry.family.name
    if family == "video_focalnet":
        return dict(img_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], focal_levels=[2, 2, 2, 2], focal_windows=[3, 3, 3, 3], num_frames=4, num_classes=7)
    if family == "stam":
        clip = dict(entry.defaults.get("aggregate") or {}).get("clip_length", 4)
        return dict(img_size=32, embed_dim=32, depth=1, num_heads=2, num_classes=7, aggregate={"clip_length": clip, "embed_dim": 32, "n_layers": 1})
    if family == "adafocusv3":
        # AdaFocusV3 needs 224x224 frames (7x7 glance map); few segments and steps keep it small
        return dict(num_segments=8, num_glance_segments=4, num_focus_segments=2, num_classes=7, patch_size=64)
    raise KeyError(f"no small configuration for family {family!r}")


@pytest.fixture(scope="session")
def tiny_clip_bundle(tmp_path_factory: pytest.TempPathFactory):
    from videploy.export.api import export_bundle

    model = TinyClipNet()
    out = tmp_path_factory.mktemp("tiny") / "clip"
    return model, export_bundle(model, out, name="tiny_clip", batch="1:2:4")


@pytest.fixture(scope="session")
def tiny_ada_bundle(tmp_path_factory: pytest.TempPathFactory):
    from videploy.export.api import export_bundle

    model = TinyAdaFocus()
    out = tmp_path_factory.mktemp("tiny") / "ada"
    return model, export_bundle(model, out, name="tiny_ada")


def export_small(name: str, out: Path, **kwargs: Any):
    """Export zoo / family ``name`` at its family's small configuration."""
    from videploy.export.api import export_bundle

    return export_bundle(name, out, overrides=small_overrides(name), **kwargs)


@pytest.fixture(scope="session")
def zoo_export(tmp_path_factory: pytest.TempPathFactory):
    """``zoo_export(name)``: the small-configuration bundle of zoo model ``name`` (exported once per session).

    Zoo names whose small configurations coincide (the Video-FocalNet sizes differ only in the
    overridden widths/depths) share one export.
    """
    import json

    from videploy.models import resolve_kwargs

    done: dict[str, object] = {}

    def get_result(name: str):
        _, kwargs = resolve_kwargs(name, small_overrides(name))
        key = json.dumps(kwargs, sort_keys=True, default=str)
        if key not in done:
            done[key] = export_small(name, tmp_path_factory.mktemp("zoo") / name, batch="1:2:4")
        return done[key]

    return get_result


def one_per_family() -> list[str]:
    """The first zoo name of every model family (the families' graphs differ; sizes within one do not)."""
    from videploy.models import available, get

    seen: dict[str, str] = {}
    for name in available():
        seen.setdefault(get(name).family.name, name)
    return sorted(seen.values())
