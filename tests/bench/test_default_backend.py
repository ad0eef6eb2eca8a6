"""predict's default CPU backend: chosen from a benchmark run, recorded in the bundle, used by predict."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.bench.bundles import tiny_focalnet_bundle
from videploy.bench import default_backend as db
from videploy.errors import VideployError


def _timing(seconds: float) -> SimpleNamespace:
    return SimpleNamespace(stats=SimpleNamespace(median=seconds))


def _report(times: dict[tuple[str, int], dict[str, float]], adaptive_steps: int | None = None, device: str = "cpu") -> SimpleNamespace:
    graphs = [SimpleNamespace(role=role, batch=batch, timings={n: _timing(s) for n, s in by.items()}) for (role, batch), by in times.items()]
    ee = None if adaptive_steps is None else SimpleNamespace(num_steps=adaptive_steps)
    manifest = SimpleNamespace(early_exit=ee, precision="fp32")
    return SimpleNamespace(graphs=graphs, manifest=manifest, settings={"device": device, "precision": None})


def test_the_fastest_runtime_backend_wins_and_the_reference_and_variants_do_not_compete():
    report = _report(
        {
            ("main", 1): {"onnxruntime": 0.010, "openvino": 0.006, "torch": 0.001, "onnxruntime@int8-cpu": 0.0005},
            ("main", 8): {"onnxruntime": 0.040, "openvino": 0.032, "torch": 0.004, "onnxruntime@int8-cpu": 0.002},
        }
    )
    choice = db.choose_cpu_backend(report)
    assert choice.backend == "openvino"
    assert set(choice.seconds_per_video) == {"onnxruntime", "openvino"}
    assert choice.seconds_per_video["openvino"] == {1: 0.006, 8: 0.004}
    # geometric mean of the per-video ratios: sqrt(10/6 * 5/4)
    assert choice.speedup["onnxruntime"] == pytest.approx((10 / 6 * 5 / 4) ** 0.5)
    assert "onnxruntime 1.44x slower" in choice.reason and "batch 1,8" in choice.reason


def test_adaptive_cost_counts_every_local_step():
    # openvino has the faster glance, onnxruntime the faster local step: six local steps decide
    report = _report(
        {
            ("glance", 2): {"onnxruntime": 0.010, "openvino": 0.002},
            ("policy", 2): {"onnxruntime": 0.001, "openvino": 0.001},
            ("local", 2): {"onnxruntime": 0.004, "openvino": 0.006},
        },
        adaptive_steps=6,
    )
    choice = db.choose_cpu_backend(report)
    assert choice.backend == "onnxruntime"
    assert choice.seconds_per_video["onnxruntime"][2] == pytest.approx((0.010 + 0.001 + 6 * 0.004) / 2)


def test_adaptive_whole_model_timing_decides_when_the_run_has_it():
    """Graphs timed one call at a time run colder than inside the chain (measured: the full-size
    local step 19 ms alone vs ~12 ms in the chain at batch 1); the whole-model timing is what a video costs."""
    report = _report({("glance", 2): {"onnxruntime": 0.010, "openvino": 0.002}, ("local", 2): {"onnxruntime": 0.004, "openvino": 0.006}}, adaptive_steps=6)
    report.whole_model = [
        SimpleNamespace(role="whole model", batch=b, timings={"onnxruntime": _timing(0.050 * b), "openvino": _timing(0.040 * b), "torch": _timing(0.01)})
        for b in (1, 2)
    ]
    choice = db.choose_cpu_backend(report)
    assert choice.backend == "openvino"  # the per-graph sum would have said onnxruntime
    assert choice.seconds_per_video == {"onnxruntime": {1: 0.050, 2: 0.050}, "openvino": {1: 0.040, 2: 0.040}}


def test_refuses_runs_that_cannot_choose():
    with pytest.raises(VideployError, match="CPU backend"):
        db.choose_cpu_backend(_report({("main", 1): {"onnxruntime": 0.01}}, device="cuda"))
    with pytest.raises(VideployError, match="at least one runtime backend"):
        db.choose_cpu_backend(_report({("main", 1): {"torch": 0.01}}))


@pytest.fixture
def bundle(tmp_path):
    return tiny_focalnet_bundle(tmp_path / "vfn")


def test_bench_set_default_records_and_predict_uses_it(bundle, capsys, monkeypatch):
    from videploy.bundle.bundle import Bundle
    from videploy.cli import main
    from videploy.runtime.samples import sample_video_path

    pytest.importorskip("openvino")
    assert main(["bench", str(bundle), "--backend", "onnxruntime,openvino", "--batch", "1", "--repeat", "2", "--warmup", "1", "--threads", "1", "--set-default"]) == 0
    capsys.readouterr()
    entry = Bundle.open(bundle).manifest.provenance[db.PROVENANCE_KEY]
    times = entry["seconds_per_video"]
    assert entry["backend"] == min(times, key=lambda n: times[n]["1"])
    assert "--set-default" in entry["command"] and entry["machine"]

    assert main(["predict", str(bundle), str(sample_video_path()), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == entry["backend"]
    if entry["backend"] != "onnxruntime":
        assert any("measured default" in n for n in out["notes"])
    # an explicit --backend wins
    assert main(["predict", str(bundle), str(sample_video_path()), "--json", "--backend", "onnxruntime"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "onnxruntime"


def test_a_recorded_backend_that_is_not_installed_falls_back_with_the_extra_named(bundle, monkeypatch):
    from videploy.bundle.bundle import Bundle
    from videploy.bundle.manifest import write_manifest

    b = Bundle.open(bundle)
    write_manifest(b.root, b.manifest.with_updates(provenance={**b.manifest.provenance, db.PROVENANCE_KEY: {"backend": "openvino", "reason": "r", "machine": "m"}}))
    b = Bundle.open(bundle)
    monkeypatch.setattr(db.importlib.util, "find_spec", lambda name: None)
    name, note = db.default_backend(b)
    assert name == "onnxruntime" and "videploy[openvino]" in note
    # not for another device or precision: the record is about FP32 on the CPU
    assert db.default_backend(b, device="cuda") == ("onnxruntime", None)
    assert db.default_backend(b, precision="int8-cpu") == ("onnxruntime", None)
