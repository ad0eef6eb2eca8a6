"""Strict JSON out: one encoding of non-finite floats, used by every JSON videploy writes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from videploy import jsonsafe

ROOT = Path(__file__).resolve().parents[1]


def strict_loads(text: str):
    def bad(token: str):
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=bad)


def test_encoding_round_trip():
    for x, enc in ((math.inf, "inf"), (-math.inf, "-inf"), (1.5, 1.5), (0.0, 0.0)):
        assert jsonsafe.encode_float(x) == enc and jsonsafe.decode_float(enc) == x
    assert jsonsafe.encode_float(math.nan) == "nan" and math.isnan(jsonsafe.decode_float("nan"))
    for bad in (True, None, "Infinity", "x", [1.0]):
        with pytest.raises(ValueError):
            jsonsafe.decode_float(bad)


def test_dumps_is_strict_for_nested_and_numpy_values():
    doc = {"a": [math.nan, (math.inf, -math.inf)], "b": np.float32("nan"), "c": np.array([1.0, np.inf]), "d": np.int64(3), "e": {"f": np.bool_(True)}}
    text = jsonsafe.dumps(doc)
    assert strict_loads(text) == {"a": ["nan", ["inf", "-inf"]], "b": "nan", "c": [1.0, "inf"], "d": 3, "e": {"f": True}}


def test_no_other_json_writer_in_the_package():
    """Every JSON videploy writes goes through jsonsafe.dumps (a bare json.dumps would write NaN / Infinity)."""
    offenders = []
    for path in [*ROOT.joinpath("videploy").rglob("*.py"), *ROOT.joinpath("benchmarks").rglob("*.py")]:
        if path.name == "jsonsafe.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bjson\.dumps?\(", line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}")
    assert offenders == []


def test_prediction_with_non_finite_values_is_strict_json():
    from videploy.runtime.recognizer import AdaptiveTrace, ClassScore, Prediction

    p = Prediction(
        source="v.mp4", model_name="m", family="adafocusv3", top=(ClassScore(0, math.nan),), probabilities=np.array([math.nan]),
        views=(1, 1), frame_indices=np.zeros((1, 2), dtype=np.int64), num_frames=2, gflops=math.inf, random_weights=True,
        adaptive=AdaptiveTrace(exit_step=0, num_steps=1, cubes=(), entropies=(math.nan,), thresholds=(math.inf, -math.inf), full_gflops=1.0),
    )
    d = strict_loads(jsonsafe.dumps(p.to_dict()))
    assert d["top"][0]["probability"] == "nan" and d["gflops"] == "inf"
    assert d["adaptive"]["thresholds"] == ["inf", "-inf"] and d["adaptive"]["entropies"] == ["nan"]
