"""Option parsing shared by the export API and CLI (pure functions)."""

from __future__ import annotations

import pytest

from videploy.bundle.manifest import BatchRange
from videploy.errors import VideployError
from videploy.export.api import count_labels, parse_batch, parse_overrides, parse_value
from videploy.export.onnx_export import MIN_OPSET, check_opset, default_opset


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("2", BatchRange(2, 2, 2)),
        (3, BatchRange(3, 3, 3)),
        ("1:8", BatchRange(1, 8, 8)),
        ("1:4:8", BatchRange(1, 4, 8)),
        (" 2:2:2 ", BatchRange(2, 2, 2)),
        (None, BatchRange(1, 4, 16)),
        (BatchRange(1, 1, 2), BatchRange(1, 1, 2)),
    ],
)
def test_parse_batch(spec, expected):
    assert parse_batch(spec) == expected


@pytest.mark.parametrize("spec", ["0", "4:2", "1:5:4", "a", "1:2:3:4", "", "2:1:3", "1:2048", "1000000"])
def test_parse_batch_refuses(spec):
    with pytest.raises(VideployError, match="--batch"):
        parse_batch(spec)


def test_parse_batch_fixed_is_not_dynamic():
    assert not parse_batch("4").dynamic and parse_batch("1:4").dynamic


@pytest.mark.parametrize(
    "text, value",
    [("16", 16), ("0.5", 0.5), ("[1,1,1,1]", [1, 1, 1, 1]), ("true", True), ("null", None), ("(2, 3)", (2, 3)), ("True", True), ("mbv2", "mbv2"), ('"x"', "x")],
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_parse_overrides():
    assert parse_overrides(["embed_dim=16", "depths=[1, 1, 1, 1]", "dataset=actnet"]) == {"embed_dim": 16, "depths": [1, 1, 1, 1], "dataset": "actnet"}
    for bad in ("embed_dim", "=3", "1x=2", "a-b=1"):
        with pytest.raises(VideployError, match="KEY=VALUE"):
            parse_overrides([bad])


def test_opset_floor():
    assert MIN_OPSET == 17
    check_opset(None)
    check_opset(17)
    with pytest.raises(VideployError, match="LayerNormalization"):
        check_opset(16)


def test_default_opset_is_the_exporters():
    # torch 2.13's dynamo exporter emits opset 20 when none is asked for (checked on a real export in
    # test_export_tiny.py, which records what the graph really says)
    assert default_opset() >= 20


def test_count_labels(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("a\n\nb\nc\n")
    assert count_labels(f) == 3
