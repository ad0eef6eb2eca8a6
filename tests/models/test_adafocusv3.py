"""AdaFocusV3: registry, checkpoints, glue functions, deploy graphs, cost.

The components (policies, classifier) and glue functions are checked against the official code by
the public reference vectors (tests/models/test_reference_vectors.py); here: the checkpoint layout,
independent references for the export-friendly rewrites (sampling grid, index sampling,
interpolation), the three graphs against the monolithic official-evaluation forward, export, and
the per-exit cost against the official constants. Tiny configurations (the backbones are always
the full MobileNetV2 / ResNet-50, as upstream); the full model only under ``slow``.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import videploy.models as vm
from videploy.errors import VideployError
from videploy.models import adafocusv3 as ada
from videploy.models.adafocusv3_parts import sample_frame_indices
from videploy.models.base import GraphModule

TINY = dict(num_segments=8, num_glance_segments=4, num_focus_segments=3, num_classes=5, patch_size=64)
S, TG, TF, C = 8, 4, 3, 5


def _perturb_(model: ada.AdaFocusV3, seed: int = 0) -> ada.AdaFocusV3:
    """Realistic eval-mode normalisation, so that videos of one batch get different features and
    so pick different frames and boxes: BN statistics from one train-mode pass (with the default
    statistics the random-init network saturates and every video looks the same), then randomly
    perturbed so eval normalisation differs from batch normalisation."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass sets the batch statistics
        model.train()
        model(torch.randn(2, model.config.num_segments, 3, 224, 224, generator=g))
        model.eval()
        for m in bns:
            m.momentum = 0.1
            m.running_mean.add_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.4 + 0.8)
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
    return model


@pytest.fixture(scope="module")
def tiny() -> ada.AdaFocusV3:
    torch.manual_seed(0)
    return _perturb_(vm.create("adafocusv3", **TINY)).eval()


def _video(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, S, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def run_chained(model: ada.AdaFocusV3, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What the runtime does: glance on the glance frames, policy, then Tf local steps."""
    g = model.deploy_graphs()
    b = video.shape[0]
    logits, _, global_state, featmap, global_feat = g["glance"](video[:, list(model.glance_indices)])
    exits = [logits]
    frame_indices, actions, boxes = g["policy"](featmap, global_feat)
    state = torch.zeros(b, 4096)
    rows = torch.arange(b)[:, None]
    for t in range(model.config.num_focus_segments):
        frames = video[rows, frame_indices[:, t]]  # (B, K, 3, H, W)
        step = torch.full((b,), t, dtype=torch.int64)
        logits, _, state = g["local"](frames, actions[:, t], step, state, global_state)
        exits.append(logits)
    return torch.stack(exits, dim=1), {"frame_indices": frame_indices, "actions": actions, "boxes": boxes}


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    scale = max(float(b.abs().max()), 1.0)
    torch.testing.assert_close(a, b, rtol=rel, atol=rel * scale)


# --- registry / configuration -----------------------------------------------------------------


def test_zoo_entry_has_official_defaults():
    entry, kwargs = vm.resolve_kwargs("adafocusv3_mbv2_r50", {})
    assert entry.family.name == "adafocusv3"
    assert kwargs == dict(
        num_segments=48, num_glance_segments=16, num_focus_segments=16, num_classes=200, input_size=224, patch_size=128,
        stn_hidden_dim=128, temporal_hidden_dim=64, temperature=1.0, dropout=0.2, fc_dropout=0.2, glance_arch="mbv2",
    )
    assert "adafocusv3_mbv2_r50" in vm.available()
    for name in ("spatial_policy", "temporal_policy", "pooling_classifier"):
        assert vm.get(name).family.component
        assert name not in vm.available(include_families=True)
    _, kw = vm.resolve_kwargs("adafocusv3_mbv2_r50", {"num_frames": 24, "image_size": 224})
    assert kw["num_segments"] == 24 and kw["input_size"] == 224


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"glance_arch": "res50"}, ["glance_arch", "mbv2"]),
        ({"input_size": 100}, ["input_size", "32"]),
        ({"glance_size": 96}, ["glance_size", "divides"]),
        ({"num_segments": 10, "num_glance_segments": 4}, ["num_glance_segments", "num_segments"]),
        ({"num_focus_segments": 9}, ["num_focus_segments"]),
        ({"patch_size": 16}, ["patch_size"]),
        ({"dataset": "fcvid"}, ["239"]),
        ({"hidden_units": 3}, ["hidden_units"]),
    ],
)
def test_bad_configuration_is_a_videploy_error(overrides, words):
    with torch.device("meta"), pytest.raises(VideployError) as info:
        vm.create("adafocusv3", **{**TINY, **overrides})
    for w in words:
        assert w in str(info.value)


def test_official_args_are_accepted():
    # AdaFocus(args) reads batch_size and device, which do not change the network.
    with torch.device("meta"):
        m = vm.create("adafocusv3", **TINY, batch_size=32, device="cpu", dataset="actnet", fc_dropout=0.5, temperature=2.0)
    assert m.config.temperature == 2.0 and m.temporal_policy.T == 2.0
    assert m.official_kwargs()["num_segments"] == 8


# --- checkpoints -------------------------------------------------------------------------------


def _manifest_state_dict(ref_dir):
    shapes = json.loads((ref_dir / "manifests" / "uniadafocus_actnet_full.shapes.json").read_text())
    return {
        k: torch.empty(v, device="meta", dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
        for k, v in shapes.items()
    }


def test_full_manifest_loads_strictly_after_convert(ref_dir):
    official = _manifest_state_dict(ref_dir)
    with torch.device("meta"):
        model = vm.create("adafocusv3_mbv2_r50")
    converted = ada.convert_official_state_dict(official)
    model.load_state_dict(converted, strict=True)
    dropped = set(official) - set(converted)
    assert dropped == {k for k in official if k.startswith(ada.DROPPED_PREFIXES)}
    assert {k.rsplit(".", 1)[0] for k in dropped} == {
        "global_CNN.classifier", "local_CNN.fc", "global_CNN_fc.1", "local_CNN_fc.1", "aux_fc",
    }
    assert ada.infer_config(official) == {
        "num_classes": 200, "num_glance_segments": 16, "num_focus_segments": 16,
        "stn_hidden_dim": 128, "temporal_hidden_dim": 64, "glance_arch": "mbv2",
    }


def test_convert_is_pure_and_keeps_official_names():
    sd = {"aux_fc.weight": torch.zeros(1), "classifier.global_classifiers.0.1.weight": torch.zeros(5, 4096), "local_CNN.fc.bias": torch.zeros(3)}
    before = dict(sd)
    out = ada.convert_official_state_dict(sd)
    assert out == {"classifier.global_classifiers.0.1.weight": sd["classifier.global_classifiers.0.1.weight"]}
    assert sd == before and out is not sd


def test_family_metadata_names_parts():
    fam = vm.get("adafocusv3").family
    assert fam.convert is ada.convert_official_state_dict and fam.infer is ada.infer_config
    assert fam.parts == {"global_CNN": "glance", "spatial_policy": "policy", "temporal_policy": "policy", "local_CNN": "local", "classifier": "classifier"}


def _load_checkpoint_or_skip(model, sd):
    try:
        return vm.load_checkpoint(model, sd)
    except NotImplementedError:
        pytest.skip("videploy.models.checkpoint.load_checkpoint is not implemented yet")


@pytest.mark.parametrize(
    "corrupt, part",
    [
        (lambda sd: {k: v for k, v in sd.items() if not k.startswith("local_CNN.layer2.1.")}, "local"),
        (lambda sd: {**sd, "classifier.local_classifiers.1.1.weight": torch.zeros(7, 8192)}, "classifier"),
        (lambda sd: {k: v for k, v in sd.items() if not k.startswith("temporal_policy.")}, "policy"),
        (lambda sd: {**sd, "global_CNN.features.0.0.weight": torch.zeros(16, 3, 3, 3)}, "glance"),
    ],
)
def test_mismatched_checkpoint_names_the_part(tiny, corrupt, part):
    sd = {k: v.clone() for k, v in tiny.state_dict().items()}
    sd["aux_fc.weight"] = torch.zeros(C, 1280)  # an official training head: dropped, not an error
    with torch.device("meta"):
        target = vm.create("adafocusv3", **TINY)
    _load_checkpoint_or_skip(target, {k: v.to("meta") for k, v in sd.items()})  # the intact one loads
    with pytest.raises(VideployError) as info:
        _load_checkpoint_or_skip(target, corrupt(sd))
    assert part in str(info.value)


# --- glue functions: independent references ----------------------------------------------------


def _affine_reference(frames, actions, patch_size, image_size, input_patch_size):
    """torch's own affine_grid + grid_sample on theta = [[sx, 0, tx], [0, sy, ty]] (the paper's crop)."""
    scale = actions[:, 2:4] * (224 - 96) / input_patch_size + 96 / input_patch_size
    side = patch_size * scale  # [h, w]
    corner = actions[:, :2] * (image_size - side)  # [y1, x1]
    theta = torch.zeros(actions.shape[0], 2, 3)
    theta[:, 0, 0] = side[:, 1] / image_size
    theta[:, 1, 1] = side[:, 0] / image_size
    theta[:, 0, 2] = (2 * corner[:, 1] + side[:, 1]) / image_size - 1
    theta[:, 1, 2] = (2 * corner[:, 0] + side[:, 0]) / image_size - 1
    grid = F.affine_grid(theta, [actions.shape[0], frames.shape[1], patch_size, patch_size], align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@pytest.mark.parametrize("image_size, patch_size, input_patch_size, channels", [(224, 96, 96, 3), (224, 128, 128, 3), (224, 64, 64, 3), (7, 3, 96, 16), (7, 4, 128, 8), (50, 17, 40, 2)])
def test_patch_grid_equals_affine_grid_sample(image_size, patch_size, input_patch_size, channels):
    g = torch.Generator().manual_seed(image_size * 1000 + patch_size)
    frames = torch.randn(5, channels, image_size, image_size, generator=g)
    actions = torch.rand(5, 4, generator=g)
    actions[0] = torch.tensor([0.0, 0.0, 0.0, 0.0])
    actions[1] = torch.tensor([1.0, 1.0, 1.0, 1.0])
    got = ada.get_patch_grid_scalexy(input_frames=frames, actions=actions, patch_size=patch_size, image_size=image_size, input_patch_size=input_patch_size)
    ref = _affine_reference(frames, actions, patch_size, image_size, input_patch_size)
    assert got.shape == (5, channels, patch_size, patch_size)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def _naive_indices(weights, num_segments, tg, tf):
    """Inverse-CDF sampling written out with Python loops (the algorithm as described in the paper's code)."""
    out = []
    for w in weights.tolist():
        cdf = [0.0]
        for x in w:
            cdf.append(cdf[-1] + x)
        cdf[-1] = 1.0
        row = []
        for i in range(tf):
            q = (i + 0.5) / tf
            j = next(j for j, c in enumerate(cdf) if c >= q)
            seg = min(max(j, 1), tg) - 1
            x1, x2, y1, y2 = seg / tg, (seg + 1) / tg, cdf[seg], cdf[seg + 1]
            pos = (x2 * (q - y1) - x1 * (q - y2)) / (y2 - y1)
            row.append(int(pos * num_segments // 1))
        for i in range(1, tf):
            row[i] = row[i] if row[i] > row[i - 1] else row[i - 1] + 1
        row = [min(r, num_segments - tf + i) for i, r in enumerate(row)]
        out.append(row)
    return torch.tensor(out, dtype=torch.int64)


@pytest.mark.parametrize("num_segments, tg, tf", [(48, 16, 16), (12, 4, 3), (8, 4, 8), (30, 10, 5)])
def test_policy_sample_indices_matches_naive_reference(num_segments, tg, tf):
    g = torch.Generator().manual_seed(num_segments + tg + tf)
    logits = torch.randn(6, tg, generator=g, dtype=torch.float64) * torch.tensor([0.1, 1.0, 3.0, 6.0, 10.0, 20.0], dtype=torch.float64)[:, None]
    logits[4, -1] += 40.0  # mass at the end: exercises the clamp
    logits[5, tg // 2] += 40.0  # mass in the middle: exercises the strictly-increasing fix-up
    weights = torch.softmax(logits, dim=1)
    ref = _naive_indices(weights, num_segments, tg, tf)
    got = sample_frame_indices(weights.float(), num_segments, tg, tf)
    assert torch.equal(got, ref)
    flat = ada.policy_sample_indices(weights=weights.float(), num_segments=num_segments, num_global_segments=tg, num_local_segments=tf, rand_sample=False)
    assert torch.equal(flat, (ref + torch.arange(6)[:, None] * num_segments).reshape(-1))
    assert bool((got[:, 1:] > got[:, :-1]).all()) and int(got.min()) >= 0 and int(got.max()) < num_segments


def test_policy_sample_indices_random_draws_are_valid_and_reproducible():
    w = torch.softmax(torch.randn(4, 6), dim=1)
    a = sample_frame_indices(w, 18, 6, 5, rand_sample=True, generator=torch.Generator().manual_seed(1))
    b = sample_frame_indices(w, 18, 6, 5, rand_sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert bool((a[:, 1:] > a[:, :-1]).all()) and int(a.min()) >= 0 and int(a.max()) < 18


def test_mc_sample_feature():
    feat = torch.randn(3 * 5, 7)
    w = torch.softmax(torch.randn(3, 5), dim=1)
    mean = (feat.view(3, 5, 7) * w[..., None]).sum(1) / w.sum(1, keepdim=True)
    _close(ada.mc_sample_feature(global_feat=feat, weights=w, global_feature_dim=7, T1=1, sample_times=128), mean)
    a = ada.mc_sample_feature(feat, w, 7, T1=3, sample_times=16, generator=torch.Generator().manual_seed(0))
    b = ada.mc_sample_feature(feat, w, 7, T1=3, sample_times=16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (3, 7)
    # every draw is a convex combination of the frames: bounded by their min / max
    f = feat.view(3, 5, 7)
    assert bool((a <= f.amax(1) + 1e-5).all()) and bool((a >= f.amin(1) - 1e-5).all())


def test_segment_actions_is_linear_interpolation():
    a = torch.rand(2 * TG, 4)
    got = ada.segment_actions(a, TG, S)  # (2, S, 4)
    src = a.view(2, TG, 4)
    for i in range(S):
        x = max((i + 0.5) * TG / S - 0.5, 0.0)
        lo = int(x)
        hi = min(lo + 1, TG - 1)
        lam = x - lo
        _close(got[:, i], (1 - lam) * src[:, lo] + lam * src[:, hi])


# --- the model and its graphs --------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_chained_parts_equal_monolithic_forward_at_every_exit(tiny, batch):
    video = _video(batch, seed=batch)
    with torch.no_grad():
        ref = tiny(video)
        official_layout = tiny(video.reshape(batch, S * 3, 224, 224))
        got, aux = run_chained(tiny, video)
    assert ref.shape == (batch, TF + 1, C)
    assert torch.equal(official_layout, ref)
    _close(got, ref)
    fi = aux["frame_indices"]
    assert fi.shape == (batch, TF, 1) and fi.dtype == torch.int64
    if batch > 1:  # the perturbed policies pick different cubes per video
        assert len({tuple(r) for r in fi[..., 0].tolist()}) > 1


def test_monolithic_forward_reads_only_glance_and_focus_frames(tiny):
    video = _video(2, seed=7)
    with torch.no_grad():
        ref = tiny(video)
        _, aux = run_chained(tiny, video)
    used = set(tiny.glance_indices)
    other = video.clone()
    for b in range(2):
        keep = used | set(aux["frame_indices"][b, :, 0].tolist())
        for t in set(range(S)) - keep:
            other[b, t] = torch.randn(3, 224, 224)
    with torch.no_grad():
        assert torch.equal(tiny(other), ref)


def test_graph_outputs_follow_the_contract(tiny):
    graphs = tiny.deploy_graphs()
    assert list(graphs) == ["glance", "policy", "local"]
    expected = {
        "glance": {"logits": ((2, C), torch.float32), "entropy": ((2,), torch.float32), "global_state": ((2, 4096), torch.float32),
                   "featmap": ((2, TG, 1280, 7, 7), torch.float32), "global_feat": ((2, TG, 1280), torch.float32)},
        "policy": {"frame_indices": ((2, TF, 1), torch.int64), "actions": ((2, TF, 4), torch.float32), "boxes": ((2, TF, 4), torch.float32)},
        "local": {"logits": ((2, C), torch.float32), "entropy": ((2,), torch.float32), "next_local_state": ((2, 4096), torch.float32)},
    }
    ins = {"glance": ("frames",), "policy": ("featmap", "global_feat"), "local": ("frames", "action", "step", "local_state", "global_state")}
    for role, g in graphs.items():
        assert isinstance(g, GraphModule)
        assert g.input_names == ins[role] and g.output_names == tuple(expected[role])
        with torch.no_grad():
            outs = g(*g.example_inputs(2))
        for name, out in zip(g.output_names, outs):
            assert (tuple(out.shape), out.dtype) == expected[role][name], (role, name)
    with torch.no_grad():
        logits, ent, *_ = graphs["glance"](*graphs["glance"].example_inputs(2))
    p = logits.softmax(-1)
    _close(ent, -(p * p.log()).sum(-1))


def test_policy_boxes_and_actions(tiny):
    policy = tiny.deploy_graphs()["policy"]
    with torch.no_grad():
        fi, actions, boxes = policy(*policy.example_inputs(3))
    side = actions[..., 2:] * 128 + 96  # pixels covered, [h, w]
    _close(boxes[..., 2] - boxes[..., 0], side[..., 1])
    _close(boxes[..., 3] - boxes[..., 1], side[..., 0])
    _close(boxes[..., 1], actions[..., 0] * (224 - side[..., 0]))
    assert bool((boxes >= -1e-4).all()) and bool((boxes <= 224 + 1e-4).all())


def test_mixed_steps_in_one_local_batch(tiny):
    local = tiny.deploy_graphs()["local"]
    frames, action, _, local_state, global_state = local.example_inputs(2)
    step = torch.tensor([0, 2])
    with torch.no_grad():
        joint = local(frames, action, step, local_state, global_state)
        alone = [local(frames[i : i + 1], action[i : i + 1], step[i : i + 1], local_state[i : i + 1], global_state[i : i + 1]) for i in range(2)]
        # and against the official per-step head (Dropout + Linear module) on the same features
        _, _, state = joint
        for i in range(2):
            head = tiny.classifier.local_classifiers[int(step[i])]
            _close(joint[0][i], head(torch.cat([state[i], global_state[i]])[None])[0])
    for j, out in enumerate(joint):
        _close(out, torch.cat([a[j] for a in alone]))


def test_each_graph_exports_with_dynamic_batch(tiny):
    batch = torch.export.Dim("batch", min=1, max=64)
    for role, g in tiny.deploy_graphs().items():
        ex = g.example_inputs(2)
        ep = torch.export.export(g, ex, dynamic_shapes=tuple({0: batch} for _ in ex))
        targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not any("affine_grid" in t for t in targets), role
        assert not any("grid_sampler_3d" in t for t in targets), role
        ex3 = g.example_inputs(3)
        with torch.no_grad():
            for a, b in zip(ep.module()(*ex3), g(*ex3)):
                assert a.shape == b.shape and a.dtype == b.dtype
                _close(a, b)


def test_preprocessing_and_early_exit(tiny):
    pre = tiny.preprocessing()
    assert (pre.num_frames, pre.sampling, pre.crop_size, pre.resize_short) == (S, "segments", (224, 224), 256)
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225) and pre.scale == pytest.approx(1 / 255)
    ee = tiny.early_exit()
    assert ee.glance_indices == (1, 3, 5, 7) and ee.num_steps == TF and ee.frames_per_cube == 1 and ee.patch_size == 64
    assert ee.thresholds is None and len(ee.exit_gflops) == TF + 1
    assert all(b > a for a, b in zip(ee.exit_gflops, ee.exit_gflops[1:]))
    (x,) = tiny.example_inputs(2)
    assert x.shape == (2, S, 3, 224, 224)


# --- cost ----------------------------------------------------------------------------------------

# ops/early_exit_uni_adafocus.py constants (GMACs), patch 128
OFFICIAL = {
    "mbv2_per_frame": 0.299511328,
    "spatial_policy": 0.822485376,
    "temporal_policy": 0.00412992,
    "resnet50_128": 1.334601664,
    "global_mlp_per_frame": 5.246976e-3,
    "local_mlp_per_frame": 8.392704e-3,
    "global_classifier": 0.8192e-3,
    "local_classifier": 1.6384e-3,
}


def _official_exit(k: int) -> float:
    o = OFFICIAL
    cls = 16 * (o["global_mlp_per_frame"] + o["global_classifier"]) + k * (o["local_mlp_per_frame"] + o["local_classifier"])
    return 16 * o["mbv2_per_frame"] + k * o["resnet50_128"] + cls + (o["spatial_policy"] + o["temporal_policy"] if k else 0.0)


def test_gflops_match_official_constants():
    with torch.device("meta"):
        model = vm.create("adafocusv3_mbv2_r50")
    p = model.part_gflops()
    o = OFFICIAL
    for ours, theirs in [
        (p["global_CNN"] / 16, o["mbv2_per_frame"]),
        (p["local_CNN"], o["resnet50_128"]),
        (p["spatial_policy"], o["spatial_policy"]),
        (p["temporal_policy"], o["temporal_policy"]),
        (p["global_mlp"] / 16, o["global_mlp_per_frame"]),
        (p["local_mlp"], o["local_mlp_per_frame"]),
        (p["global_classifier"], o["global_classifier"]),
        (p["local_classifier"], o["local_classifier"]),
    ]:
        assert ours == pytest.approx(theirs, rel=0.03)
    # the graphs are their pieces: nothing heavy is hidden or double counted
    assert p["glance"] == pytest.approx(p["global_CNN"] + p["global_mlp"] + p["global_classifier"], rel=1e-6)
    assert p["policy"] == pytest.approx(p["spatial_policy"] + p["temporal_policy"], rel=1e-6)
    assert p["local"] == pytest.approx(p["local_CNN"] + p["local_mlp"] + p["local_classifier"], rel=1e-6)
    exits = model.exit_gflops()
    assert len(exits) == 17
    for k, ours in enumerate(exits):
        assert ours == pytest.approx(_official_exit(k), rel=0.03), k
    assert model.early_exit().exit_gflops == tuple(exits)


@pytest.mark.slow
def test_full_model_chained_equals_monolithic():
    torch.manual_seed(0)
    model = _perturb_(vm.create("adafocusv3_mbv2_r50")).eval()
    video = torch.randn(1, 48, 3, 224, 224)
    with torch.no_grad():
        ref = model(video)
        got, _ = run_chained(model, video)
    assert ref.shape == (1, 17, 200)
    _close(got, ref)


@pytest.mark.parametrize("role", ["policy", "local"])
def test_graph_runs_in_onnxruntime(tiny, role, tmp_path):
    # The export-sensitive graphs (index sampling, interpolation, the in-graph crop, per-step head
    # gather) through the dynamo ONNX exporter and ONNX Runtime, at another batch size than traced.
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    g = tiny.deploy_graphs()[role]
    ex = g.example_inputs(2)
    batch = torch.export.Dim("batch", min=1, max=64)
    path = tmp_path / f"{role}.onnx"
    torch.onnx.export(
        g, ex, str(path), dynamo=True, dynamic_shapes=tuple({0: batch} for _ in ex),
        input_names=list(g.input_names), output_names=list(g.output_names), external_data=False, verbose=False,
    )
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"AffineGrid", "ArgMax"}, ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ex3 = g.example_inputs(3)
    got = session.run(list(g.output_names), {n: x.numpy() for n, x in zip(g.input_names, ex3)})
    with torch.no_grad():
        ref = g(*ex3)
    for name, a, b in zip(g.output_names, got, ref):
        assert a.shape == tuple(b.shape), name
        if b.dtype == torch.int64:
            assert (a == b.numpy()).all(), name
        else:
            _close(torch.from_numpy(a), b, rel=1e-4)


def test_max_over_frames_is_amax():
    from videploy.models.adafocusv3_parts import max_over_frames

    for k in (1, 2, 5):
        x = torch.randn(3, k, 7)
        x[0, -1, 0] = float("nan")
        torch.testing.assert_close(max_over_frames(x), x.amax(dim=1), equal_nan=True, rtol=0, atol=0)
