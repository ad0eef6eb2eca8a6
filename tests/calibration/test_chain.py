"""The chain check: whole graphs that change what AdaFocusV3's chain decides go back to float."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from videploy.calibration.int8 import chain
from videploy.runtime.adaptive import Cube


def _outcome(logits: np.ndarray, box: tuple[float, ...]) -> SimpleNamespace:
    return SimpleNamespace(exit_logits=logits, cubes=(Cube(1, (3,), box, (0.0, 0.0, 1.0, 1.0)),))


class FakeChain:
    """Outcomes that depend on which graphs are in INT8: ``effects[role] = (logit noise, clips whose box moves)``."""

    def __init__(self, effects: dict[str, tuple[float, int]], clips: int = 20, exits: int = 3):
        rng = np.random.default_rng(0)
        self.base = rng.normal(size=(clips, exits, 5)) * 3
        self.effects = effects
        self.quantized: tuple[str, ...] = ()
        self.runs: list[tuple[str, ...]] = []
        self.bundle = SimpleNamespace(early_exit=SimpleNamespace(thresholds=None, criterion="entropy"))

    def trial_bundle(self, roles):
        self.quantized = tuple(roles)
        return self.bundle

    def outcomes(self, bundle, precision, clips, batch_size):
        if precision is not None:
            self.runs.append(self.quantized)
        rng = np.random.default_rng(1)
        out = []
        for i, row in enumerate(self.base):
            logits, box = row.copy(), (0.0, 0.0, 32.0, 32.0)
            for role in self.quantized if precision is not None else ():
                noise, moved = self.effects[role]
                logits = logits + rng.normal(size=logits.shape) * noise
                if i < moved:
                    box = (3.0, 0.0, 35.0, 32.0)
            out.append(_outcome(logits, box))
        return out


@pytest.fixture
def fake(monkeypatch):
    def make(effects):
        f = FakeChain(effects)
        monkeypatch.setattr(chain, "chain_outcomes", f.outcomes)
        return f

    return make


def test_nothing_returns_to_float_when_the_whole_chain_passes(fake):
    f = fake({"glance": (0.001, 0), "policy": (0.0, 0), "local": (0.002, 0)})
    res = chain.analyse_chain(f.trial_bundle, ["glance", "policy", "local"], ["int8"], [None] * 20, 4, 0.998, 0.9)
    assert res.float_graphs == ()
    assert [t.quantized for t in res.trials] == [("glance", "policy", "local")]
    assert res.trials[0].score > 0.999 and res.trials[0].cube_agreement == 1.0


def test_a_graph_that_moves_the_cubes_stays_in_float_even_with_close_logits(fake):
    # the policy barely moves the logits of the fake, but moves 5 of 20 clips' boxes by 3 px
    f = fake({"glance": (0.001, 0), "policy": (0.0, 5), "local": (0.002, 0)})
    res = chain.analyse_chain(f.trial_bundle, ["glance", "policy", "local"], ["int8"], [None] * 20, 4, 0.998, 0.9)
    assert res.float_graphs == ("policy",)
    alone = {t.quantized: t for t in res.trials}
    assert alone[("policy",)].cube_agreement == 0.75 and alone[("policy",)].score > 0.999
    assert alone[("glance", "local")].passes(0.998, 0.9)  # what is left was measured together
    assert "kept the cubes of 75% of the clips" in res.reason("policy") and "whole graph stays in float" in res.reason("policy")


def test_graphs_return_to_float_worst_first_until_the_rest_pass(fake):
    f = fake({"glance": (1.0, 0), "policy": (0.0, 0), "local": (0.3, 0)})
    res = chain.analyse_chain(f.trial_bundle, ["glance", "policy", "local"], ["int8"], [None] * 20, 4, 0.998, 0.9)
    # glance is worst, then local; the policy alone passes and is kept in INT8 without another run
    assert res.float_graphs == ("glance", "local")
    assert f.runs == [("glance", "policy", "local"), ("glance",), ("policy",), ("local",), ("policy", "local")]


def test_every_graph_can_return_to_float(fake):
    f = fake({"local": (1.0, 0)})
    res = chain.analyse_chain(f.trial_bundle, ["local"], ["int8", "int8-cpu"], [None] * 20, 4, 0.998, 0.9)
    assert res.float_graphs == ("local",)
    assert len(res.trials) == 1  # a single graph is not measured twice


def test_row_cosines_per_row_and_zero_rows():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [0.0, 0.0], [-1.0, -1.0]])
    assert chain.row_cosines(a, b).tolist() == pytest.approx([1.0, 1.0, -1.0])


@pytest.fixture(scope="module")
def chained(fp32_ada, calib_videos, tmp_path_factory):
    from tests.calibration.conftest import OPTIONS
    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle

    work = tmp_path_factory.mktemp("chain")
    return quantize_bundle(fp32_ada, [calib_videos], work / "ada", QuantizeOptions(cache_dir=work / "cache", **{**OPTIONS, "chain_clips": 8}))


def test_int8_bundle_records_the_chain_check(chained):
    int8_ada = chained
    rec = int8_ada.bundle.manifest.provenance["int8"]
    checked = rec["chain"]
    assert checked["clips"] == rec["calibration"]["chain_clips"] > 0
    assert checked["trials"][0]["quantized"] == [g.role for g in int8_ada.bundle.manifest.graphs if g.variants["int8"] != g.file or g.role in checked["float_graphs"]]
    for role in checked["float_graphs"]:
        g = int8_ada.bundle.graph(role)
        assert g.variants["int8"] == g.file and g.variants["int8-cpu"] == g.file
        assert not (int8_ada.bundle.root / f"{role}.int8.onnx").exists()
        (row,) = [r for r in rec["float"] if r["graph"] == role]
        assert row["whole_graph"] and "calibration clip" in row["reason"]


def test_chain_check_off_with_no_clips(fp32_ada, calib_videos, tmp_path):
    from tests.calibration.conftest import OPTIONS
    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle

    res = quantize_bundle(fp32_ada, [calib_videos], tmp_path / "nochain", QuantizeOptions(cache_dir=tmp_path / "cache", targets=("int8",), **{**OPTIONS, "chain_clips": 0}))
    assert "chain" not in res.bundle.manifest.provenance["int8"]
    assert res.bundle.manifest.provenance["int8"]["calibration"]["chain_clips"] == 0
