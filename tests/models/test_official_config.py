"""from_official_config: official Video-FocalNet YAML configs -> the official model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import videploy.models as vm
from videploy.errors import VideployError
from videploy.models.official_config import from_official_config, official_kwargs, read_official_config

# Values of the official configs/<dataset>/video-focalnet_<size>.yaml files (TalalWasim/Video-FocalNets
# @ 39eba998), as data: (dataset, classes, MODEL.TYPE, embed_dim, depths, drop_path_rate).
OFFICIAL = {
    "kinetics400_tiny": ("kinetics400", 400, "videofocalnet_tiny", 96, [2, 2, 6, 2], 0.2),
    "kinetics400_small": ("kinetics400", 400, "videofocalnet_small", 96, [2, 2, 18, 2], 0.3),
    "kinetics400_base": ("kinetics400", 400, "videofocalnet_base", 128, [2, 2, 18, 2], 0.5),
    "ssv2_base": ("ssv2", 174, "videofocalnet_base", 128, [2, 2, 18, 2], 0.5),
}


def official_yaml(dataset: str, classes: int, model_type: str, embed_dim: int, depths: list[int], dpr: float) -> dict:
    """The structure and values of a shipped config (paths shortened)."""
    return {
        "DATA": {
            "ROOT": "",
            "TRAIN_FILE": "train.csv",
            "VAL_FILE": "val.csv",
            "DATASET": dataset,
            "NUM_FRAMES": 8,
            "NUM_CLASSES": classes,
            "LABEL_LIST": f"labels/{dataset}_labels.csv",
            "BATCH_SIZE": 8,
        },
        "MODEL": {
            "TYPE": model_type,
            "NAME": model_type.replace("videofocalnet", "video-focalnet"),
            "DROP_PATH_RATE": dpr,
            "NUM_CLASSES": classes,
            "FOCAL": {"EMBED_DIM": embed_dim, "DEPTHS": depths, "FOCAL_LEVELS": [2, 2, 2, 2], "FOCAL_WINDOWS": [3, 3, 3, 3]},
            "LABEL_SMOOTHING": 0.1,
        },
        "TRAIN": {
            "BASE_LR": 0.1,
            "WARMUP_LR": 0.001,
            "MIN_LR": 0.001,
            "EPOCHS": 120,
            "WEIGHT_DECAY": "1e-4",  # YAML reads 1e-4 (no dot) as a string; the official loader evaluates it
            "OPTIMIZER": {"NAME": "sgd"},
            "WARMUP_EPOCHS": 20,
            "PRETRAINED_PATH": "./pretrained/focalnet_srf.pth",
        },
        "AUG": {"FRAME_INTERVAL": 4, "FLIP_RATIO": 0.5, "COLOR_JITTER": 0.8, "GRAY_SCALE": 0.2, "MIXUP": 0.8, "MIXUP_PROB": 0.5},
        "SAVE_FREQ": 10,
    }


def write(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_configs_build_the_official_models(tmp_path, ref_dir, name):
    dataset, classes, model_type, embed_dim, depths, dpr = OFFICIAL[name]
    path = write(tmp_path / f"{name}.yaml", official_yaml(*OFFICIAL[name]))
    with torch.device("meta"):
        model = from_official_config(path)
    cfg = model.config
    assert (cfg.embed_dim, list(cfg.depths), cfg.num_classes, cfg.drop_path_rate) == (embed_dim, depths, classes, dpr)
    assert (cfg.num_frames, cfg.img_size, cfg.tubelet_size, cfg.patch_size) == (8, 224, 1, 4)
    assert not model.training
    # the Kinetics configs are exactly the zoo entries
    if dataset == "kinetics400":
        zoo = vm.get(model_type.replace("videofocalnet", "video_focalnet"))
        with torch.device("meta"):
            assert vm.create(zoo.name).config == cfg
    manifest = {"kinetics400": f"{model_type}_k400", "ssv2": f"{model_type}_ssv2"}[dataset]
    expected = json.loads((ref_dir / "manifests" / f"{manifest}.shapes.json").read_text())
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == expected
    p = model.preprocessing()
    assert (p.frame_interval, p.num_clips, p.num_crops, p.crop_size, p.resize_short) == (4, 4, 3, (224, 224), 256)


def test_yaml_strings_are_read_as_literals(tmp_path):
    cfg, explicit = read_official_config(write(tmp_path / "c.yaml", official_yaml(*OFFICIAL["kinetics400_tiny"])))
    assert cfg["TRAIN.WEIGHT_DECAY"] == pytest.approx(1e-4)
    assert cfg["TRAIN.OPTIMIZER.NAME"] == "sgd"
    assert cfg["DATA.IMG_SIZE"] == 224 and "DATA.IMG_SIZE" not in explicit  # config.py default
    assert cfg["AUG.FRAME_INTERVAL"] == 4 and "AUG.FRAME_INTERVAL" in explicit


def test_base_inheritance_and_overrides(tmp_path):
    write(
        tmp_path / "common" / "base.yaml",
        {
            "DATA": {"NUM_FRAMES": 16, "IMG_SIZE": 160, "INPUT_SIZE": 160},
            "MODEL": {"TYPE": "videofocalnet_small", "NUM_CLASSES": 600, "TUBELET_SIZE": 2},
        },
    )
    write(tmp_path / "common" / "arch.yaml", {"BASE": ["base.yaml"], "MODEL": {"FOCAL": {"USE_LAYERSCALE": True, "NORMALIZE_MODULATOR": True}}})
    child = write(
        tmp_path / "exp" / "child.yaml",
        {
            "BASE": ["", "../common/arch.yaml"],
            "MODEL": {"NUM_CLASSES": 48, "FOCAL": {"USE_POSTLN": True}},
            "AUG": {"FRAME_INTERVAL": 2},
            "TEST": {"NUM_CLIP": 2, "NUM_CROP": 1},
        },
    )
    kwargs, protocol = official_kwargs(child)
    assert kwargs["num_frames"] == 16 and kwargs["img_size"] == 160 and kwargs["tubelet_size"] == 2
    assert kwargs["num_classes"] == 48  # the child wins over its bases
    assert kwargs["use_layerscale"] and kwargs["normalize_modulator"] and kwargs["use_postln"]
    assert kwargs["embed_dim"] == 96 and kwargs["depths"] == [2, 2, 18, 2]  # fixed by the small factory
    assert (protocol.frame_interval, protocol.num_clips, protocol.num_crops, protocol.input_size) == (2, 2, 1, None)

    with torch.device("meta"):
        model = from_official_config(child, num_classes=10, depths=[1, 1, 2, 1], image_size=128)
    assert model.num_classes == 10 and model.config.depths == (1, 1, 2, 1) and model.config.img_size == 128
    assert model.config.use_layerscale and model.config.tubelet_size == 2
    p = model.preprocessing()
    assert (p.num_frames, p.frame_interval, p.num_clips, p.num_crops, p.crop_size) == (16, 2, 2, 1, (128, 128))


def test_tiny_config_builds_a_working_model(tmp_path):
    data = official_yaml(*OFFICIAL["kinetics400_tiny"])
    data["DATA"].update(IMG_SIZE=32, INPUT_SIZE=48, NUM_FRAMES=4)
    data["MODEL"]["TUBELET_SIZE"] = 2
    model = from_official_config(write(tmp_path / "t.yaml", data), depths=[1, 1, 1, 1], embed_dim=8, num_classes=3)
    (x,) = model.example_inputs(2)
    assert x.shape == (2, 4, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    assert model.preprocessing().crop_size == (48, 48)  # the data pipeline's DATA.INPUT_SIZE


def test_model_spec_accepts_new_keys(tmp_path):
    data = official_yaml(*OFFICIAL["kinetics400_tiny"])
    data["MODEL"]["SPEC"] = {"ANYTHING": 1, "NESTED": {"X": [1, 2]}}
    kwargs, _ = official_kwargs(write(tmp_path / "spec.yaml", data))
    assert kwargs["embed_dim"] == 96


def _bad(tmp_path, mutate) -> str:
    data = official_yaml(*OFFICIAL["kinetics400_base"])
    mutate(data)
    return write(tmp_path / "bad.yaml", data)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d["MODEL"].update(TYPE="vit_base_patch16_224"), "MODEL.TYPE 'vit_base_patch16_224' is not a Video-FocalNet"),
        (lambda d: d["MODEL"].pop("TYPE"), "MODEL.TYPE 'focal'"),  # the config.py default names no factory
        (lambda d: d["MODEL"]["FOCAL"].update(FOCAL_LEVEL=[1, 1, 1, 1]), r"unknown key MODEL.FOCAL.FOCAL_LEVEL \(did you mean MODEL.FOCAL.FOCAL_LEVELS\?\)"),
        (lambda d: d.update(EXTRA={"A": 1}), "unknown key EXTRA"),
        (lambda d: d["DATA"].update(NUM_FRAMES="eight"), "DATA.NUM_FRAMES must be an int"),
        (lambda d: d["MODEL"]["FOCAL"].update(USE_POSTLN=1), "USE_POSTLN must be a bool"),
        (lambda d: d["MODEL"].update(FOCAL=[1, 2]), "MODEL.FOCAL is a section"),
        (lambda d: d["MODEL"]["FOCAL"].update(EMBED_DIM=192), r"MODEL.FOCAL.EMBED_DIM is 192, but the official build_model ignores it .* embed_dim = 128"),
        (lambda d: d["MODEL"]["FOCAL"].update(DEPTHS=[2, 2, 6, 2]), "MODEL.FOCAL.DEPTHS"),
        (lambda d: d["MODEL"]["FOCAL"].update(PATCH_SIZE=2), "MODEL.FOCAL.PATCH_SIZE"),
        (lambda d: d["MODEL"]["FOCAL"].update(FOCAL_FACTORS=[3, 3, 3, 3]), "no such option"),
        (lambda d: d["MODEL"]["FOCAL"].update(FOCAL_WINDOWS=[3, 3, 4, 3]), "odd"),
        (lambda d: d.update(BASE="base.yaml"), "BASE must be a list"),
    ],
)
def test_bad_configs(tmp_path, mutate, match):
    path = _bad(tmp_path, mutate)
    with pytest.raises(VideployError, match=match):
        with torch.device("meta"):
            from_official_config(path)


def test_ignored_key_with_matching_override_builds(tmp_path):
    path = _bad(tmp_path, lambda d: d["MODEL"]["FOCAL"].update(EMBED_DIM=64))
    with torch.device("meta"):
        model = from_official_config(path, embed_dim=64)
    assert model.config.embed_dim == 64
    # a value equal to what the official factory builds is fine
    same = _bad(tmp_path, lambda d: d["MODEL"]["FOCAL"].update(EMBED_DIM=128, PATCH_SIZE=4, MLP_RATIO=4))
    assert official_kwargs(same)[0]["embed_dim"] == 128


def test_unreadable_files(tmp_path):
    with pytest.raises(VideployError, match="does not exist"):
        from_official_config(tmp_path / "nope.yaml")
    with pytest.raises(VideployError, match="not a valid YAML"):
        from_official_config(write(tmp_path / "broken.yaml", "MODEL:\n  TYPE: [unclosed\n"))
    with pytest.raises(VideployError, match="must be a YAML mapping"):
        from_official_config(write(tmp_path / "list.yaml", "- a\n- b\n"))
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(VideployError, match="not a valid YAML"):
        from_official_config(tmp_path / "binary.yaml")
    with pytest.raises(VideployError, match="does not exist"):
        from_official_config(write(tmp_path / "orphan.yaml", {"BASE": ["missing_base.yaml"]}))


def test_base_loop_is_reported(tmp_path):
    write(tmp_path / "a.yaml", {"BASE": ["b.yaml"]})
    write(tmp_path / "b.yaml", {"BASE": ["a.yaml"]})
    with pytest.raises(VideployError, match="loops"):
        from_official_config(tmp_path / "a.yaml")


def test_from_official_config_is_exported_by_the_package():
    assert vm.from_official_config is from_official_config
