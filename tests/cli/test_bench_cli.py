"""``videploy bench`` end to end: JSON structure, ratios consistent with the raw samples, AdaFocusV3
GFLOPs ratios from the manifest's exit costs, and a run without torch. No timed assertions."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.bench.bundles import tiny_focalnet_bundle
from tests.runtime.toys import EXIT_GFLOPS, TF, ToyAdaFocus, adaptive_bundle
from videploy.cli import main

TENSORRT_INSTALLED = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_cli")
    return tiny_focalnet_bundle(d / "vfn"), adaptive_bundle(d / "ada", ToyAdaFocus().eval())


def bench_json(capsys, *argv) -> dict:
    code = main(["bench", *map(str, argv), "--json", "--repeat", "2", "--warmup", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("examples:", "INTERLEAVED", "median", "p90", "IQR", "RATIOS", "skipped", "--budget", "continuous", "decode", "occupancy"):
        assert needle in text


def test_json_both_backends_ratios_consistent(capsys, bundles):
    vfn, _ = bundles
    d = bench_json(capsys, vfn, "--batch", "1,2", "--videos", "3")
    assert d["model"] == "tiny_focalnet" and d["adaptive"] is None and d["random_weights"] is True
    status = {b["name"]: b for b in d["backends"]}
    assert status["onnxruntime"]["status"] == "ok" and status["torch"]["status"] == "ok"
    assert status["onnxruntime"]["threads"] == 1 and status["torch"]["threads"] == 1
    if not TENSORRT_INSTALLED:
        assert status["tensorrt"]["status"] == "skipped" and "tensorrt" in status["tensorrt"]["reason"]
        assert "\n" not in status["tensorrt"]["reason"]
    assert d["reference"] == "torch"
    assert [(g["role"], g["batch"]) for g in d["graphs"]] == [("main", 1), ("main", 2)]
    for g in d["graphs"]:
        med = {n: statistics.median(t["samples_s"]) for n, t in g["backends"].items()}
        assert {"onnxruntime", "torch"} <= set(med)
        for n, t in g["backends"].items():
            assert t["repeat"] == 2 and len(t["samples_s"]) == 2
            assert t["median_s"] == pytest.approx(med[n])
            assert t["p90_s"] == pytest.approx(float(np.percentile(t["samples_s"], 90)))
            assert t["iqr_s"] == pytest.approx(float(np.percentile(t["samples_s"], 75) - np.percentile(t["samples_s"], 25)))
            assert t["throughput_per_s"] == pytest.approx(g["batch"] / med[n])
            assert g["speedup"][n] == pytest.approx(med["torch"] / med[n])
    assert d["decode"]["repeat"] == 2 and d["decode"]["frames"] == 2
    s = d["settings"]
    assert s["repeat"] == 2 and s["warmup"] == 1 and s["threads"] == 1 and s["interleaved"] is True
    assert "--repeat 2 --warmup 1" in d["command"] and "--threads 1" in d["command"]
    m = d["machine"]
    assert m["cpu_count"] >= 1 and "onnxruntime" in m["versions"] and "torch" in m["versions"]


def test_adaptive_json_gflops_from_exit_costs(capsys, bundles):
    _, ada = bundles
    eta = [0.5, 0.9, 0.9, float("inf")]
    d = bench_json(capsys, ada, "--batch", "4", "--videos", "6", "--thresholds", ",".join(map(str, eta)))
    torch_slot = next(b for b in d["backends"] if b["name"] == "torch")
    assert torch_slot["status"] == "skipped" and "checkpoint" in torch_slot["reason"]
    a = d["adaptive"]
    assert a["thresholds"]["source"] == "given" and a["exit_gflops"] == list(EXIT_GFLOPS)
    e = a["early_exit"]
    cost = np.asarray(a["exit_gflops"])
    for case in e["cases"].values():
        counts = np.asarray(case["exit_counts"])
        assert counts.sum() == 6
        assert case["gflops_per_video"] == pytest.approx(float((counts * cost).sum() / 6))
    assert e["cases"]["all steps"]["exit_counts"] == [0] * TF + [6]
    assert e["gflops_ratio"] == pytest.approx(e["cases"]["early exit"]["gflops_per_video"] / EXIT_GFLOPS[-1])
    assert a["batching"]["identical_results"] is True


def test_table_output(capsys, bundles):
    _, ada = bundles
    assert main(["bench", str(ada), "--repeat", "1", "--warmup", "0", "--threads", "1", "--videos", "4", "--budget", "1.5"]) == 0
    out = capsys.readouterr().out
    for needle in ("torch skipped", "end-to-end videos/s", "1 thread(s)", "decode + preprocess", "where time goes", "early exit spends", "continuous batching runs at", "budget 1.5", "command: videploy bench"):
        assert needle in out
    assert "speedup" not in out  # one backend ran: no ratio column against itself
    assert "videos/s end to end" in out  # AdaFocusV3: model-only and end-to-end rates side by side


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch", "16"], "accepts 1 to 8"),
        (["--batch", "a"], "not a batch size"),
        (["--backend", "onnx"], "not a backend"),
        (["--repeat", "0"], "--repeat must be >= 1"),
    ],
)
def test_errors(capsys, bundles, argv, message):
    _, ada = bundles
    assert main(["bench", str(ada), *argv]) == 2
    assert message in capsys.readouterr().err


def test_thresholds_refused_for_static_bundle(capsys, bundles):
    vfn, _ = bundles
    assert main(["bench", str(vfn), "--thresholds", "1,2"]) == 2
    assert "AdaFocusV3" in capsys.readouterr().err


NO_TORCH = textwrap.dedent(
    """
    import json, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    from videploy.cli import main
    code = main(["bench", sys.argv[1], "--json", "--repeat", "1", "--warmup", "0", "--threads", "1", "--videos", "2", "--batch", "1"])
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnxscript") and sys.modules[m] is not None)
    leaked += sorted(m for m in sys.modules if m.startswith("videploy.models"))
    print("CODE", code, json.dumps(leaked))
    """
)


def test_bench_without_torch(bundles):
    vfn, _ = bundles
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(vfn)],
        capture_output=True, text=True, timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    code_line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("CODE "))
    _, code, leaked = code_line.split(" ", 2)
    assert code == "0" and json.loads(leaked) == []
    d = json.loads(proc.stdout[: proc.stdout.index("CODE ")])
    status = {b["name"]: b for b in d["backends"]}
    assert status["onnxruntime"]["status"] == "ok"
    assert status["torch"]["status"] == "skipped" and "'torch'" in status["torch"]["reason"] and "not installed" in status["torch"]["reason"]
    assert d["reference"] == "onnxruntime"
    assert list(d["graphs"][0]["backends"]) == ["onnxruntime"] and d["graphs"][0]["speedup"]["onnxruntime"] == 1.0


def test_out_writes_the_complete_record(capsys, bundles, tmp_path):
    import json

    _, ada = bundles
    out = tmp_path / "record"
    assert main(["bench", str(ada), "--repeat", "2", "--warmup", "0", "--threads", "1", "--videos", "4", "--batch", "1,2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["adafocus_budget.png", "latency_vs_batch.png", "report.json", "report.md"]
    d = json.loads((out / "report.json").read_text())  # strict JSON
    t = d["graphs"][0]["backends"]["onnxruntime"]
    assert len(t["samples_s"]) == 2 and t["min_s"] <= t["median_s"] <= t["p95_s"] <= t["p99_s"] <= t["max_s"]
    assert t["achieved_gflops_per_s"] > 0 and 0 < t["fraction_of_matmul_peak"] and d["matmul_peak"]["gflops_per_s"] > 0
    ok = [b for b in d["backends"] if b["status"] == "ok"]
    assert all(b["load_s"] > 0 for b in ok) and d["command"].endswith(f"--out {out}")
    stages = d["adaptive"]["early_exit"]["cases"]["all steps"]["stages_s"]
    assert {"glance", "policy", "local step 1"} <= set(stages) and any(k.startswith("glue") for k in stages)
    assert len(d["adaptive"]["budget_sweep"]) == 3
    whole = d["whole_model"]  # AdaFocusV3 as a video costs it: the chain, every step, per batch
    assert [w["batch"] for w in whole] == [1, 2] and all(len(w["backends"]["onnxruntime"]["samples_s"]) == 2 for w in whole)
    e2e = d["end_to_end"]  # decode, model and both pipelined on real files, lazy and eager focus frames
    assert e2e["backend"] == "onnxruntime" and e2e["videos"] == 4 and e2e["decode_workers"] == 1
    assert {"decode, every frame", "decode, glance frames", "end to end, early exit, lazy", "end to end, all steps, eager"} <= set(e2e["cases"])
    assert all(len(c["samples_s"]) == 2 for c in e2e["cases"].values())
    assert 0 < e2e["cases"]["end to end, early exit, lazy"]["efficiency"]
    # distinct clip files, so the fitted thresholds really send videos out early end to end
    cases = e2e["cases"]
    assert cases["end to end, early exit, lazy"]["gflops_per_video"] < cases["end to end, all steps, lazy"]["gflops_per_video"]
    assert isinstance(e2e["realised_lazy"], float) and math.isfinite(e2e["realised_lazy"])
    md = (out / "report.md").read_text()
    for needle in ("p99", "% of peak", "cold start", "exit budget sweep", "stages (ms)", "## End to end", "vs slower stage", "| whole model |"):
        assert needle in md
