"""STAM: official reference data, an independent re-computation with torch's own transformer layers,
both input layouts, export (torch.export and ONNX + onnxruntime), zoo key manifests, preprocessing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import videploy.models as vm
from tests.reference_vectors import constructor_kwargs, load_vector
from videploy.bundle.manifest import Preprocessing
from videploy.errors import VideployError
from videploy.models.blocks.vit import DropPath, drop_path
from videploy.models.stam import STAM, STAMConfig, TAggregate, TAggregateConfig, convert_official_state_dict, infer_config

TINY = dict(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=5, aggregate={"clip_length": 4, "embed_dim": 32, "n_layers": 1})
# other shapes of every knob: clip_length, img_size, patch, depth, heads, temporal depth, mlp_ratio
OTHER_CONFIGS = {
    "t3_img48_p8_h3": dict(img_size=48, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=7, mlp_ratio=2.0, aggregate={"clip_length": 3, "embed_dim": 48, "n_layers": 2}),
    "t5_img40_p20_h8": dict(img_size=40, patch_size=20, embed_dim=64, depth=3, num_heads=8, num_classes=4, aggregate={"clip_length": 5, "embed_dim": 64, "n_layers": 1}),
}


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-default weights of O(1) activations, so every parameter matters in a comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("cls_token", "pos_embed")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.6 + 0.7)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def _tiny(**overrides) -> STAM:
    torch.manual_seed(0)
    return _randomize(vm.create("stam", **{**TINY, **overrides}))


# --- official reference vector -----------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(ref_dir):
    path = ref_dir / "stam_public.npz"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    meta, arrays = load_vector(path)
    family, kwargs = constructor_kwargs(meta["constructor"])
    assert family == "stam"
    model = vm.create(family, **kwargs)
    state = {k: torch.from_numpy(v) for k, v in arrays["sd"].items()}
    assert list(model.state_dict()) == list(state), "state-dict keys or their order differ from the official model"
    model.load_state_dict(state, strict=True)
    return model.eval(), arrays


def test_reference_logits_and_mid_arrays(reference):
    model, arrays = reference
    taps: dict[str, torch.Tensor] = {}
    hooks = [
        model.norm.register_forward_hook(lambda m, i, o: taps.__setitem__("frame_cls", o)),
        model.aggregate.register_forward_hook(lambda m, i, o: taps.__setitem__("video_embedding", o)),
    ]
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(arrays["in"]["frames"]))
    finally:
        for h in hooks:
            h.remove()
    np.testing.assert_allclose(logits.numpy(), arrays["out"]["logits"], rtol=1e-4, atol=1e-4)
    for name in ("frame_cls", "video_embedding"):
        assert taps[name].shape == arrays["mid"][name].shape, name
        np.testing.assert_allclose(taps[name].numpy(), arrays["mid"][name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_reference_deploy_layout(reference):
    model, arrays = reference
    frames = torch.from_numpy(arrays["in"]["frames"])
    t = model.num_frames
    with torch.no_grad():
        logits = model(frames.reshape(-1, t, *frames.shape[1:]))
    np.testing.assert_allclose(logits.numpy(), arrays["out"]["logits"], rtol=1e-4, atol=1e-4)


def test_infer_config_reads_reference_state_dict(reference):
    model, arrays = reference
    inferred = infer_config(arrays["sd"])
    kw = model.official_kwargs()
    for key in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "mlp_ratio", "qkv_bias", "representation_size", "aggregate"):
        assert inferred[key] == kw[key], key
    assert "num_heads" not in inferred  # not recoverable from weights


# --- independent re-computation with torch's own layers ---------------------------------------


def _independent_forward(model: STAM, video: torch.Tensor) -> torch.Tensor:
    """STAM recomputed from its state dict with torch's nn.TransformerEncoderLayer (pre-norm GELU for the
    spatial blocks, official post-norm ReLU seq-first encoder for time), not with any videploy module."""
    cfg = model.config
    sd = model.state_dict()
    b, t = video.shape[:2]
    d = cfg.embed_dim
    x = video.flatten(0, 1)
    tok = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size).flatten(2).transpose(1, 2)
    tok = torch.cat((sd["cls_token"].expand(tok.shape[0], -1, -1), tok), dim=1) + sd["pos_embed"]
    for i in range(cfg.depth):
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, dim_feedforward=int(d * cfg.mlp_ratio), dropout=0.0, activation="gelu", norm_first=True, batch_first=True)
        p = f"blocks.{i}."
        layer.load_state_dict(
            {
                "self_attn.in_proj_weight": sd[p + "attn.qkv.weight"],
                "self_attn.in_proj_bias": sd[p + "attn.qkv.bias"],
                "self_attn.out_proj.weight": sd[p + "attn.proj.weight"],
                "self_attn.out_proj.bias": sd[p + "attn.proj.bias"],
                "linear1.weight": sd[p + "mlp.fc1.weight"],
                "linear1.bias": sd[p + "mlp.fc1.bias"],
                "linear2.weight": sd[p + "mlp.fc2.weight"],
                "linear2.bias": sd[p + "mlp.fc2.bias"],
                "norm1.weight": sd[p + "norm1.weight"],
                "norm1.bias": sd[p + "norm1.bias"],
                "norm2.weight": sd[p + "norm2.weight"],
                "norm2.bias": sd[p + "norm2.bias"],
            }
        )
        tok = layer.eval()(tok)
    frame_cls = F.layer_norm(tok[:, 0], (d,), sd["norm.weight"], sd["norm.bias"], eps=1e-5)
    agg = cfg.aggregate
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 8), agg.n_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
    prefix = "aggregate.transformer_enc."
    enc.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True)
    seq = torch.cat((sd["aggregate.cls_token"].expand(b, -1, -1), frame_cls.reshape(b, t, d)), dim=1) + sd["aggregate.pos_embed"]
    video_embedding = enc.eval()(seq.transpose(0, 1))[0]  # sequence-first, CLS position
    return F.linear(video_embedding, sd["head.weight"], sd["head.bias"])


@pytest.mark.parametrize("name", sorted(OTHER_CONFIGS) + ["tiny"])
def test_matches_independent_computation(name):
    model = _tiny(**OTHER_CONFIGS.get(name, {}))
    (video,) = model.example_inputs(2)
    with torch.no_grad():
        ours = model(video)
        ref = _independent_forward(model, video)
    assert ours.shape == (2, model.num_classes)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_temporal_keys_are_torch_transformer_encoder_keys():
    agg = TAggregate(clip_length=3, embed_dim=16, n_layers=2)
    torch_enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 8), 2, norm=nn.LayerNorm(16), enable_nested_tensor=False)
    ours = {k: tuple(v.shape) for k, v in agg.transformer_enc.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in torch_enc.state_dict().items()}
    assert ours == theirs
    assert list(agg.state_dict())[:2] == ["cls_token", "pos_embed"]


# --- layouts, registry, errors ---------------------------------------------------------------


def test_official_and_deploy_layouts_agree():
    model = _tiny()
    (video,) = model.example_inputs(3)
    assert video.shape == (3, 4, 3, 32, 32) and 0.0 <= float(video.min()) and float(video.max()) < 1.0
    with torch.no_grad():
        deploy = model(video)
        official = model(video.flatten(0, 1))
    assert deploy.shape == (3, 5)
    torch.testing.assert_close(deploy, official, rtol=0, atol=0)


def test_videos_in_a_batch_are_independent():
    model = _tiny()
    (video,) = model.example_inputs(3)
    with torch.no_grad():
        whole = model(video)
        single = torch.cat([model(video[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(whole, single, rtol=1e-5, atol=1e-6)


def test_aliases_and_zoo_names():
    assert {"stam_8", "stam_16", "stam_32", "stam_64"} <= set(vm.available())
    with torch.device("meta"):
        model = vm.create("stam_16", num_frames=8, image_size=112, num_classes=3)
    cfg = model.config
    assert (cfg.aggregate.clip_length, cfg.img_size, cfg.num_classes) == (8, 112, 3)
    assert model.state_dict()["aggregate.pos_embed"].shape == (1, 9, 768)
    assert model.state_dict()["pos_embed"].shape == (1, 50, 768)
    # a family build without an aggregate gets the factory's temporal transformer from num_frames
    small = vm.create("stam", embed_dim=32, depth=1, num_heads=2, img_size=32, num_frames=2)
    assert small.config.aggregate == TAggregateConfig(clip_length=2, embed_dim=32, n_layers=6)
    # official kwargs round-trip through create
    again = vm.create("stam", **small.official_kwargs())
    assert again.config == small.config
    assert json.loads(json.dumps(small.official_kwargs()))["aggregate"] == {"clip_length": 2, "embed_dim": 32, "n_layers": 6}


def test_aggregate_none_is_a_frame_classifier():
    model = vm.create("stam", img_size=32, patch_size=16, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    with torch.no_grad():
        assert model(torch.rand(5, 3, 32, 32)).shape == (5, 3)
    with pytest.raises(VideployError, match="aggregate"):
        model.example_inputs(1)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(norm_layer="BatchNorm2d"), "norm_layer"),
        (dict(aggregate={"clip_length": 4, "embed_dim": 64, "n_layers": 1}), "aggregate embed_dim"),
        (dict(aggregate={"clip_length": 4, "embed_dim": 32, "layers": 1}), "unknown keyword"),
        (dict(aggregate={"embed_dim": 32}), "clip_length"),
        (dict(embed_dim=30, aggregate={"clip_length": 4, "embed_dim": 30, "n_layers": 1}), "divisible"),
        (dict(img_size=(32, 48)), "square"),
        (dict(representation_size=16), "representation_size"),
        (dict(drop_rate=1.5), "drop_rate"),
    ],
)
def test_bad_configs_raise_videploy_error(overrides, match):
    with pytest.raises(VideployError, match=match):
        vm.create("stam", **{**TINY, **overrides})


def test_norm_layer_accepts_the_official_class():
    assert STAMConfig(norm_layer=nn.LayerNorm).norm_layer == "LayerNorm"


def test_wrong_inputs_raise_videploy_error():
    model = _tiny()
    with pytest.raises(VideployError, match="4 frames per video"):
        model(torch.rand(1, 3, 3, 32, 32))
    with pytest.raises(VideployError, match="img_size=32"):
        model(torch.rand(1, 4, 3, 48, 48))
    with pytest.raises(VideployError, match="multiple of clip_length"):
        model(torch.rand(6, 3, 32, 32))
    with pytest.raises(VideployError, match="takes"):
        model(torch.rand(3, 32, 32))


def test_drop_path_train_and_eval():
    x = torch.ones(1000, 3)
    torch.manual_seed(0)
    y = drop_path(x, 0.25, training=True)
    kept = y[:, 0] != 0
    assert torch.all(y[kept] == 1 / 0.75) and torch.all(y[~kept] == 0)
    assert 0.65 < kept.float().mean() < 0.85
    assert torch.equal(DropPath(0.25).eval()(x), x)


# --- export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OTHER_CONFIGS))
def test_torch_export_with_dynamic_batch(name):
    model = _tiny(**OTHER_CONFIGS[name])
    (video,) = model.example_inputs(2)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (video,), dynamic_shapes=({0: batch},))
    (other,) = model.example_inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(other), model(other), rtol=1e-6, atol=1e-6)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = _tiny()
    batch = torch.export.Dim("batch", min=1, max=64)
    path = tmp_path / "stam.onnx"
    torch.onnx.export(
        model, model.example_inputs(2), str(path), dynamo=True, dynamic_shapes=({0: batch},),
        input_names=list(model.input_names), output_names=list(model.output_names),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "video" and inp.shape[1:] == [4, 3, 32, 32] and isinstance(inp.shape[0], str)
    for b in (1, 3):
        (video,) = model.example_inputs(b)
        with torch.no_grad():
            expected = model(video).numpy()
        (logits,) = session.run(["logits"], {"video": video.numpy()})
        assert logits.shape == (b, 5)
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


# --- zoo: full-size keys, compute, preprocessing -----------------------------------------------


@pytest.mark.parametrize("frames", [16, 32, 64])
def test_zoo_state_dict_matches_official_manifest(ref_dir, frames):
    path = ref_dir / "manifests" / f"stam_{frames}.shapes.json"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    expected = list(json.loads(path.read_text()).items())
    with torch.device("meta"):
        model = vm.create(f"stam_{frames}")
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == expected  # names, shapes and order


def test_stam_8_is_stam_16_with_8_frames(ref_dir):
    path = ref_dir / "manifests" / "stam_16.shapes.json"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    expected = json.loads(path.read_text())
    expected["aggregate.pos_embed"] = [1, 9, 768]
    with torch.device("meta"):
        model = vm.create("stam_8")
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == expected
    assert "factory has no stam_8" in vm.get("stam_8").description


def test_infer_config_reads_zoo_shapes(ref_dir):
    path = ref_dir / "manifests" / "stam_32.shapes.json"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    shapes = {k: torch.empty(v, device="meta") for k, v in json.loads(path.read_text()).items()}
    inferred = infer_config({"module." + k: v for k, v in shapes.items()})
    defaults = vm.get("stam_32").defaults
    for key in ("img_size", "patch_size", "embed_dim", "depth", "num_classes", "aggregate"):
        assert inferred[key] == defaults[key], key


def test_convert_is_pure_and_strips_data_parallel_prefix():
    sd = {"module.head.weight": torch.zeros(2, 2), "module.cls_token": torch.zeros(1, 1, 2)}
    out = convert_official_state_dict(sd)
    assert out == {"head.weight": sd["module.head.weight"], "cls_token": sd["module.cls_token"]}
    assert list(sd) == ["module.head.weight", "module.cls_token"]  # input untouched
    plain = {"head.weight": torch.zeros(1)}
    converted = convert_official_state_dict(plain)
    assert converted == plain and converted is not plain


def test_stam_16_compute_matches_the_readme():
    """README: 270 GFLOPs per view for STAM-16 = multiply-accumulates of the convolution and linear
    layers (the attention matmuls q@k^T and attn@v add another 11.4 G that the paper does not count)."""
    with torch.device("meta"):
        model = vm.create("stam_16")
        (video,) = model.example_inputs(1)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(video)
    per_op = {str(op): n / 2e9 for op, n in counter.get_flop_counts()["Global"].items()}  # FLOPs -> GMACs
    conv_linear = sum(v for k, v in per_op.items() if "convolution" in k or "addmm" in k or k.endswith(".mm"))
    assert abs(conv_linear - 270.0) / 270.0 < 0.005
    attention = counter.get_total_flops() / 2e9 - conv_linear
    assert 11.0 < attention < 12.0


@pytest.mark.parametrize("name, frames, rate", [("stam_8", 8, 0.8), ("stam_16", 16, 1.6), ("stam_32", 32, 3.2), ("stam_64", 64, 6.4)])
def test_preprocessing_is_the_official_evaluation(name, frames, rate):
    with torch.device("meta"):
        model = vm.create(name)
    pre = model.preprocessing()
    assert pre == Preprocessing(
        num_frames=frames, sampling="uniform", crop_size=(224, 224), resize_short=256,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1 / 255, layout="BTCHW", channel_order="RGB", num_clips=1, num_crops=1,
    )
    assert model.official_frame_rate == pytest.approx(rate)
    # and it survives the manifest's own validation
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in pre.__dict__.items()}
    assert Preprocessing.parse("preprocessing", d) == pre


def test_preprocessing_other_sizes():
    with torch.device("meta"):
        assert vm.create("stam_16", image_size=448).preprocessing().resize_short == 0  # official "squish" branch
        assert vm.create("stam_16", image_size=320).preprocessing().resize_short == int(320 / 0.875)


@pytest.mark.slow
def test_full_size_stam_16_runs_and_exports():
    """Full ViT-B/16 + 6-layer temporal transformer (119M parameters): both layouts agree and the
    model exports with a dynamic batch."""
    torch.manual_seed(0)
    model = vm.create("stam_16")
    (video,) = model.example_inputs(1)
    with torch.no_grad():
        deploy = model(video)
        official = model(video.flatten(0, 1))
    assert deploy.shape == (1, 400) and torch.isfinite(deploy).all()
    torch.testing.assert_close(deploy, official, rtol=0, atol=0)
    batch = torch.export.Dim("batch", min=1, max=64)
    # trace at batch 2: a batch-1 example would specialise the batch dimension to 1
    program = torch.export.export(model, model.example_inputs(2), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(video), deploy, rtol=1e-5, atol=1e-5)
