"""Video-FocalNet: official reference vector (logits and every intermediate tap), option
equivalences, the official module tree of the zoo models, checkpoint helpers, export."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

import videploy.models as vm
from tests.reference_vectors import constructor_kwargs, load_vector
from videploy.errors import VideployError
from videploy.models.video_focalnet import (
    DropPath,
    EvalProtocol,
    VideoFocalNet,
    VideoFocalNetConfig,
    convert_official_state_dict,
    infer_config,
)

VECTOR = "videofocalnet_public"
TINY = dict(img_size=32, embed_dim=8, depths=[1, 1, 1, 1], num_frames=4, num_classes=5)


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights everywhere (LayerNorm affine and biases too), so every path matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.1))
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))
    return model.eval()


def _f64(*models: nn.Module) -> None:
    # equivalence checks run in float64 so that a wrong formula cannot hide in rounding noise
    for m in models:
        m.double()


def _video(model: VideoFocalNet, batch: int = 2, seed: int = 1) -> torch.Tensor:
    H, W = model.config.img_hw
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.config.num_frames, model.config.in_chans, H, W, generator=g)


def _build(**kwargs) -> VideoFocalNet:
    return vm.create("video_focalnet", **{**TINY, **kwargs})


# --------------------------------------------------------------------------------------------
# official reference vector
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vector(ref_dir):
    path = ref_dir / f"{VECTOR}.npz"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    meta, arrays = load_vector(path)
    family, kwargs = constructor_kwargs(meta["constructor"])
    assert family == "video_focalnet"
    model = vm.create(family, **kwargs)
    state = {k: torch.from_numpy(v) for k, v in arrays["sd"].items()}
    # same keys in the same order as upstream, then a strict load
    assert list(model.state_dict()) == list(state)
    model.load_state_dict(convert_official_state_dict(state), strict=True)
    return model.eval(), arrays


def test_reference_vector_logits_and_taps(vector):
    model, arrays = vector
    taps: dict[str, torch.Tensor] = {}

    def tap(name, flatten=False):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            taps[name] = torch.flatten(out, 1) if flatten else out

        return hook

    # the official tap positions: stem (after its norm), each stage (blocks + merging), and the
    # forward_features result (final norm + token mean)
    handles = [model.patch_embed.register_forward_hook(tap("patch_embed"))]
    handles += [layer.register_forward_hook(tap(f"layer{i}")) for i, layer in enumerate(model.layers)]
    handles.append(model.avgpool.register_forward_hook(tap("pooled", flatten=True)))
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(arrays["in"]["video"]))
    finally:
        for h in handles:
            h.remove()
    np.testing.assert_allclose(logits.numpy(), arrays["out"]["logits"], rtol=1e-4, atol=1e-4)
    assert set(arrays["mid"]) == set(taps)
    for name, ref in arrays["mid"].items():
        got = taps[name].numpy()
        assert got.shape == ref.shape, name
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4, err_msg=name)


def test_reference_vector_infer_config(vector):
    model, arrays = vector
    inferred = infer_config({k: torch.from_numpy(v) for k, v in arrays["sd"].items()})
    kwargs = model.official_kwargs()
    for key, value in inferred.items():
        assert kwargs[key] == value, key
    assert {"num_classes", "embed_dim", "depths", "focal_levels", "focal_windows", "tubelet_size", "patch_size"} <= set(inferred)
    assert "num_frames" not in inferred  # not determinable from weights


# --------------------------------------------------------------------------------------------
# options, checked against independent computations
# --------------------------------------------------------------------------------------------


def test_tubelet_stem_equals_frame_average():
    """A tubelet-2 model whose Conv3d stem is a 2-D stem inflated over time (the official
    inflation: weight / tubelet on every tap) equals the tubelet-1 model on frame-pair means."""
    m3 = _randomize(_build(num_frames=8, tubelet_size=2, img_size=(32, 48)))
    m2 = _build(num_frames=4, tubelet_size=1, img_size=(32, 48))
    assert isinstance(m3.patch_embed.proj, nn.Conv3d) and m3.patch_embed.proj.kernel_size == (2, 4, 4)
    state = m3.state_dict()
    w3 = state["patch_embed.proj.weight"]
    w2 = torch.randn(w3.shape[0], w3.shape[1], 4, 4)
    state["patch_embed.proj.weight"] = torch.stack([w2 / 2, w2 / 2], dim=2)
    m3.load_state_dict(state)
    state2 = dict(state, **{"patch_embed.proj.weight": w2})
    m2.load_state_dict(state2)
    _f64(m3, m2)
    x = _video(m3, batch=3).double()
    with torch.no_grad():
        got = m3(x)
        want = m2((x[:, 0::2] + x[:, 1::2]) / 2)
    assert got.shape == (3, 5)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_videos_in_a_batch_are_independent():
    # a wrong (batch, time) regrouping in the temporal path would mix videos
    model = _randomize(_build(tubelet_size=2))
    _f64(model)
    x = _video(model, batch=3).double()
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
        flipped = model(x.flip(1))
    torch.testing.assert_close(together, alone, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(together, flipped, atol=1e-4)  # frame order matters (temporal convs)


def test_normalize_modulator_equals_scaled_h():
    # h(ctx / (L+1)) == h'(ctx) with h' weights divided by L+1 (biases unchanged)
    a = _randomize(_build(normalize_modulator=True, focal_levels=[2, 1, 3, 2], focal_windows=[3, 1, 5, 3]))
    b = _build(normalize_modulator=False, focal_levels=[2, 1, 3, 2], focal_windows=[3, 1, 5, 3])
    _f64(a, b)
    state = a.state_dict()
    for key in list(state):
        if key.endswith(("modulation.h.weight", "modulation.h_temporal.weight")):
            stage = int(key.split(".")[1])
            state[key] = state[key] / (a.config.focal_levels[stage] + 1)
    b.load_state_dict(state)
    x = _video(a).double()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-9)
        assert not torch.allclose(a(x), _randomize(b, 0)(x), atol=1e-3)


def test_layerscale_equals_scaled_projections():
    # pre-norm: x + g1 * proj(.) and x + g2 * fc2(.) fold into the projections
    a = _randomize(_build(use_layerscale=True, layerscale_value=0.5))
    b = _build(use_layerscale=False)
    _f64(a, b)
    state = a.state_dict()
    folded = {}
    for key, value in state.items():
        if key.endswith(".gamma_1") or key.endswith(".gamma_2"):
            continue
        folded[key] = value
    for key, value in state.items():
        if key.endswith(".gamma_1"):
            blk = key[: -len("gamma_1")]
            for name in ("modulation.proj.weight", "modulation.proj.bias"):
                folded[blk + name] = state[blk + name] * (value[:, None] if name.endswith("weight") else value)
        if key.endswith(".gamma_2"):
            blk = key[: -len("gamma_2")]
            for name in ("mlp.fc2.weight", "mlp.fc2.bias"):
                folded[blk + name] = state[blk + name] * (value[:, None] if name.endswith("weight") else value)
    assert "layers.0.blocks.0.gamma_1" in state and state["layers.0.blocks.0.gamma_1"].shape == (8,)
    b.load_state_dict(folded, strict=True)
    x = _video(a).double()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("postln", [False, True])
@pytest.mark.parametrize("postln_in_mod", [False, True])
def test_block_composition(postln, postln_in_mod):
    """One block, recomputed from its parts: the residual wiring of use_postln and the LayerNorm
    before the output projection of use_postln_in_modulation."""
    model = _randomize(_build(use_postln=postln, use_postln_in_modulation=postln_in_mod, use_layerscale=True))
    _f64(model)
    blk = model.layers[0].blocks[0]
    mod = blk.modulation
    assert hasattr(mod, "ln") == postln_in_mod
    T, H, W, C = 4, 8, 8, 8
    x = torch.randn(2 * T, H * W, C, dtype=torch.float64)

    def modulation(z):  # (B*T, H, W, C), independent of the module's forward
        L = mod.focal_level
        out_q = torch.empty_like(z)
        zs = mod.f(z).permute(0, 3, 1, 2)
        q, ctx, gates = zs[:, :C], zs[:, C : 2 * C], zs[:, 2 * C :]
        acc = torch.zeros_like(q)
        for lvl in range(L):
            ctx = mod.focal_layers[lvl](ctx)
            acc = acc + ctx * gates[:, lvl : lvl + 1]
        acc = acc + torch.nn.functional.gelu(ctx.mean((2, 3), keepdim=True)) * gates[:, L:]
        spatial = mod.h(acc)
        temporal = torch.empty_like(spatial)
        for b in range(z.shape[0] // T):
            for i in range(H):
                for j in range(W):
                    seq = mod.f_temporal(z[b * T : (b + 1) * T, i, j]).T[None]  # (1, C+L+1, T)
                    c, g = seq[:, :C], seq[:, C:]
                    tacc = torch.zeros_like(c)
                    for lvl in range(L):
                        c = mod.focal_layers_temporal[lvl](c)
                        tacc = tacc + c * g[:, lvl : lvl + 1]
                    tacc = tacc + torch.nn.functional.gelu(c.mean(2, keepdim=True)) * g[:, L:]
                    temporal[b * T : (b + 1) * T, :, i, j] = mod.h_temporal(tacc)[0].T
        out_q = (q * spatial * temporal).permute(0, 2, 3, 1)
        if postln_in_mod:
            out_q = mod.ln(out_q)
        return mod.proj(out_q)

    with torch.no_grad():
        if postln:
            y = x + blk.gamma_1 * blk.norm1(modulation(x.reshape(-1, H, W, C)).reshape(-1, H * W, C))
            want = y + blk.gamma_2 * blk.norm2(blk.mlp(y))
        else:
            y = x + blk.gamma_1 * modulation(blk.norm1(x).reshape(-1, H, W, C)).reshape(-1, H * W, C)
            want = y + blk.gamma_2 * blk.mlp(blk.norm2(y))
        got = blk(x, H, W)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_conv_embed_and_non_square_shapes():
    model = _randomize(
        _build(use_conv_embed=True, img_size=(64, 96), depths=[1, 2, 1], focal_levels=[1, 2, 0], focal_windows=[1, 3, 5], num_frames=3)
    )
    stem, merge = model.patch_embed.proj, model.layers[0].downsample.proj
    assert (stem.kernel_size, stem.stride, stem.padding) == ((7, 7), (4, 4), (2, 2))
    assert (merge.kernel_size, merge.stride, merge.padding) == ((3, 3), (2, 2), (1, 1))
    assert model.patches_resolution == [16, 24]
    assert len(model.layers) == 3 and model.layers[2].downsample is None
    assert model.layers[2].blocks[0].modulation.kernel_sizes == []  # focal level 0: global context only
    (x,) = model.example_inputs(2)
    assert x.shape == (2, 3, 3, 64, 96)
    taps = {}
    model.layers[2].register_forward_hook(lambda m, i, o: taps.setdefault("last", o))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    tokens, Hl, Wl = taps["last"]
    assert (Hl, Wl) == (4, 6) and tokens.shape == (2 * 3, 24, 32)


def test_stage_without_blocks_is_only_its_merging():
    # depths may hold 0 (the official model accepts it): that stage is just the patch merging,
    # i.e. a stage whose only block is made the identity by zero layer-scale gammas
    a = _randomize(_build(depths=[1, 1, 1, 1], use_layerscale=True))
    b = _build(depths=[1, 0, 1, 1], use_layerscale=True)
    _f64(a, b)
    state = a.state_dict()
    with torch.no_grad():
        a.layers[1].blocks[0].gamma_1.zero_()
        a.layers[1].blocks[0].gamma_2.zero_()
    b.load_state_dict({k: v for k, v in state.items() if not k.startswith("layers.1.blocks.")}, strict=True)
    assert len(b.layers[1].blocks) == 0 and b.layers[1].downsample is not None
    x = _video(a).double()
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=1e-9, atol=1e-9)
    with pytest.raises(VideployError, match="depths"):
        _build(depths=[1, -1, 1, 1])


def test_zero_classes_returns_features():
    model = _build(num_classes=0)
    assert isinstance(model.head, nn.Identity)
    with torch.no_grad():
        assert model(_video(model)).shape == (2, 64)


def test_drop_path_is_identity_in_eval_only():
    dp = DropPath(0.5)
    x = torch.ones(64, 3, 2)
    assert dp.eval()(x) is x
    y = dp.train()(x)
    per_sample = y.reshape(64, -1)
    assert set(per_sample[:, 0].tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()  # whole samples are dropped
    model = _randomize(_build(drop_path_rate=0.5, drop_rate=0.1))
    assert isinstance(model.layers[3].blocks[0].drop_path, DropPath)
    assert isinstance(model.layers[0].blocks[0].drop_path, nn.Identity)  # rate 0 for the first block
    x = _video(model)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), model(x))


def test_frame_count_must_match():
    model = _build()
    with pytest.raises(VideployError, match="num_frames=4"):
        model(torch.randn(1, 3, 3, 32, 32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(focal_levels=[2, 2, 2]), "one entry per stage"),
        (dict(focal_windows=[3, 3, 4, 3]), "odd"),
        (dict(tubelet_size=2, use_conv_embed=True), "tubelet_size"),
        (dict(img_size=(32, 32, 3)), "img_size"),
        (dict(depths="2222"), "depths"),
        (dict(tubelet_size=8), "tubelet_size"),
        (dict(focal_level=[2, 2, 2, 2]), "focal_levels"),  # typo: did you mean
    ],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(VideployError, match=match):
        _build(**kwargs)


def test_config_accepts_lists_and_tuples():
    a = VideoFocalNetConfig(depths=[1, 2], focal_levels=(1, 1), focal_windows=[3, 3], img_size=[64, 96])
    assert a.depths == (1, 2) and a.img_size == (64, 96) and a.img_hw == (64, 96)
    assert VideoFocalNetConfig(img_size=128).img_hw == (128, 128)
    model = vm.create("video_focalnet", depths=(1, 2), focal_levels=[1, 1], focal_windows=(3, 3), embed_dim=8, img_size=[32, 48], num_frames=2)
    kw = model.official_kwargs()
    assert kw["depths"] == [1, 2] and kw["img_size"] == [32, 48]
    json.dumps(kw)  # JSON-able for the manifest
    assert vm.create("video_focalnet", **kw).config == model.config  # round trip


def test_norm_layer_kwarg():
    assert _build(norm_layer=nn.LayerNorm).config == _build().config
    with pytest.raises(VideployError, match="norm_layer"):
        _build(norm_layer=nn.BatchNorm1d)


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


ALL_OPTIONS = dict(
    img_size=(32, 48),
    num_frames=6,
    tubelet_size=2,
    use_layerscale=True,
    use_postln=True,
    use_postln_in_modulation=True,
    normalize_modulator=True,
    depths=[1, 1],
    focal_levels=[2, 1],
    focal_windows=[3, 5],
)


@pytest.mark.parametrize("kwargs", [dict(), ALL_OPTIONS], ids=["default", "tubelet-nonsquare-alloptions"])
def test_torch_export_dynamic_batch(kwargs):
    torch.manual_seed(0)  # the inputs are random: the same ones every run
    model = _randomize(_build(**kwargs))
    (x,) = model.example_inputs(2)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    exported = ep.module()
    for b in (1, 2, 5):
        (xb,) = model.example_inputs(b)
        with torch.no_grad():
            # the exported program may order float sums differently: float32 noise, not 1e-5 exactly
            torch.testing.assert_close(exported(xb), model(xb), rtol=1e-4, atol=1e-5)
    video = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == "video")
    shape = video.meta["val"].shape
    assert not isinstance(shape[0], int)  # symbolic batch
    assert tuple(shape[1:]) == (model.config.num_frames, 3, *model.config.img_hw)


# --------------------------------------------------------------------------------------------
# zoo, registry, checkpoint helpers
# --------------------------------------------------------------------------------------------

ZOO_MANIFESTS = {
    "video_focalnet_tiny": ("videofocalnet_tiny_k400", {}),
    "video_focalnet_small": ("videofocalnet_small_k400", {}),
    "video_focalnet_base": ("videofocalnet_base_k400", {}),
    # the SSv2 model is the base model with 174 classes
    "video_focalnet_base ssv2": ("videofocalnet_base_ssv2", {"num_classes": 174}),
}


@pytest.mark.parametrize("name", list(ZOO_MANIFESTS))
def test_zoo_state_dict_matches_official_manifest(ref_dir, name):
    manifest, overrides = ZOO_MANIFESTS[name]
    expected = json.loads((ref_dir / "manifests" / f"{manifest}.shapes.json").read_text())
    index = json.loads((ref_dir / "manifests" / "index.json").read_text())[manifest]
    with torch.device("meta"):  # full size, but no memory and no init time
        model = vm.create(name.split()[0], **overrides)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(expected)  # same keys, same order
    assert got == expected
    # the zoo entry is the official factory + config
    kwargs = model.official_kwargs()
    for key, value in {**index["factory_kwargs"], **index["factory_fixed"]}.items():
        if key != "pretrained":
            assert kwargs[key] == value, key
    assert sum(p.numel() for p in model.parameters()) == index["num_parameters"]
    # infer_config recovers the configuration from the weights' shapes
    inferred = infer_config(model.state_dict())
    for key, value in inferred.items():
        assert kwargs[key] == value, key


def test_zoo_listing_and_aliases():
    names = vm.available()
    for name in ("video_focalnet_tiny", "video_focalnet_small", "video_focalnet_base"):
        assert name in names
        assert vm.get(name).description
    with torch.device("meta"):
        model = vm.create("video_focalnet_tiny", num_frames=16, image_size=160, num_classes=10)
    assert model.config.num_frames == 16 and model.config.img_size == 160 and model.num_classes == 10
    assert model.family == "video_focalnet" and model.input_names == ("video",) and model.output_names == ("logits",)
    assert model.deploy_graphs() == {"main": model} and model.early_exit() is None
    with pytest.raises(VideployError):
        vm.create("video_focalnet_tiny", embed_dims=64)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(tubelet_size=2, num_frames=8),
        dict(use_conv_embed=True, use_layerscale=True, use_postln_in_modulation=True, patch_norm=False),
        dict(patch_size=(2, 4), in_chans=1, mlp_ratio=2.0, focal_levels=[1, 3, 0, 2], focal_windows=[5, 1, 3, 7], depths=[1, 3, 2, 1]),
        dict(num_classes=0),
    ],
)
def test_infer_config_round_trip(kwargs):
    with torch.device("meta"):
        model = _build(**kwargs)
    inferred = infer_config(model.state_dict())
    full = model.official_kwargs()
    for key, value in inferred.items():
        assert full[key] == value, key
    for key in ("num_classes", "embed_dim", "depths", "focal_levels", "tubelet_size", "use_conv_embed", "use_layerscale", "use_postln_in_modulation"):
        assert key in inferred, key
    if 0 not in full["focal_levels"]:  # a level-0 stage has no kernel to read the window from
        assert "focal_windows" in inferred


def test_convert_official_state_dict_is_pure():
    sd = {k: v for k, v in _build().state_dict().items()}
    before = dict(sd)
    out = convert_official_state_dict(sd)
    assert out == sd and out is not sd and sd == before
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    assert convert_official_state_dict(wrapped) == sd
    assert infer_config(wrapped)["embed_dim"] == TINY["embed_dim"]
    assert infer_config({}) == {}


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------


def test_preprocessing_is_the_official_eval_pipeline():
    with torch.device("meta"):
        model = vm.create("video_focalnet_base")
    p = model.preprocessing()
    assert p.num_frames == 8 and p.sampling == "clip" and p.frame_interval == 4
    assert p.crop_size == (224, 224) and p.resize_short == 256  # int(256 / 224 * 224)
    assert p.layout == "BTCHW" and p.channel_order == "RGB" and p.dtype == "float32"
    assert p.scale == pytest.approx(1 / 255)
    # mmaction img_norm_cfg in 0-255 units, applied to [0, 1] pixels
    np.testing.assert_allclose(np.array(p.mean) * 255, [123.675, 116.28, 103.53], rtol=1e-12)
    np.testing.assert_allclose(np.array(p.std) * 255, [58.395, 57.12, 57.375], rtol=1e-12)
    assert (p.num_clips, p.num_crops) == (4, 3)  # published K400 protocol
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)

    # a different size: crop and the 256/224 short side follow it
    with torch.device("meta"):
        small = vm.create("video_focalnet_tiny", image_size=160, num_frames=16)
    q = small.preprocessing()
    assert q.crop_size == (160, 160) and q.resize_short == 182 and q.num_frames == 16
    small.eval_protocol = EvalProtocol(frame_interval=2, num_clips=1, num_crops=1, input_size=192)
    r = small.preprocessing()
    assert (r.frame_interval, r.num_clips, r.num_crops, r.crop_size, r.resize_short) == (2, 1, 1, (192, 192), 219)


# --------------------------------------------------------------------------------------------
# full size (slow)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_size_tiny_forward_and_export():
    torch.manual_seed(0)
    model = vm.create("video_focalnet_tiny")
    (x,) = model.example_inputs(1)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model(x)
    forward_s = time.perf_counter() - t0
    assert out.shape == (1, 400) and torch.isfinite(out).all()
    # trace with batch 2: export specializes a dimension whose example size is 1
    (x2,) = model.example_inputs(2)
    ep = torch.export.export(model, (x2,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=32)},))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), out, rtol=1e-4, atol=1e-4)
    print(f"video_focalnet_tiny 8x224x224 forward: {forward_s:.2f} s")


def test_export_layout_of_the_temporal_path_computes_the_same(monkeypatch):
    """The export path lays the temporal convolutions out as MatMuls over shifted frames (what
    onnxruntime runs fast); it must compute what the official Conv1d path computes."""
    import videploy.models.video_focalnet as vfn
    from videploy.models import create

    torch.manual_seed(0)
    model = create("video_focalnet", img_size=32, embed_dim=16, depths=[1, 1, 1, 1], num_frames=4, num_classes=5).eval()
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        eager = model(x)
        monkeypatch.setattr(vfn, "exporting", lambda: True)
        export_layout = model(x)
    torch.testing.assert_close(export_layout, eager, rtol=1e-5, atol=1e-5)


def test_export_layout_with_normalized_modulator(monkeypatch):
    import videploy.models.video_focalnet as vfn
    from videploy.models import create

    torch.manual_seed(1)
    model = create("video_focalnet", img_size=32, embed_dim=16, depths=[1, 1, 1, 1], num_frames=4, num_classes=5, normalize_modulator=True, focal_levels=[3, 3, 3, 3]).eval()
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        eager = model(x)
        monkeypatch.setattr(vfn, "exporting", lambda: True)
        torch.testing.assert_close(model(x), eager, rtol=1e-5, atol=1e-5)
