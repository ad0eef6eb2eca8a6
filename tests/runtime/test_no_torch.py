"""The runtime is what ships to the device: it must work with torch unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from videploy import runtime
from videploy.runtime.samples import sample_video_path

SCRIPT = textwrap.dedent(
    """
    import json, pkgutil, importlib, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import videploy.runtime as rt
    for m in pkgutil.walk_packages(rt.__path__, "videploy.runtime."):
        importlib.import_module(m.name)  # every runtime module imports without torch (TensorRT lazily)
    import videploy.calibration.exit_thresholds  # the --budget solver is numpy-only too
    import videploy.calibration.dynamic_evaluation, videploy.calibration.exit_logits, videploy.calibration.exit_curve, videploy.cli.calibrate_exits  # so is calibrate-exits
    from videploy.runtime.samples import sample_video_path
    static = rt.load(sys.argv[1], threads=1).predict(sample_video_path(), views="1x3")
    adaptive = rt.load(sys.argv[2], threads=1).predict_batch([sample_video_path()] * 2, continuous=True)
    from videploy.cli import main
    code = main(["predict", sys.argv[2], str(sample_video_path()), "--json", "--budget", "2.0"])
    leaked = sorted(m for m in sys.modules if m.startswith(("videploy.models", "videploy.export")) or m.split(".")[0] in ("torch", "onnxscript"))
    leaked = [m for m in leaked if sys.modules[m] is not None]
    print("RESULT " + json.dumps({"static": static.probabilities.tolist(), "exit": adaptive[0].adaptive.exit_step, "leaked": leaked, "code": code}))
    """
)


def test_runtime_predicts_without_torch(static_dir, adaptive_dir):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(static_dir), str(adaptive_dir)],
        capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["leaked"] == [] and result["code"] == 0
    # and the numbers are the same as in a process that has torch
    here = runtime.load(static_dir, threads=1).predict(sample_video_path(), views="1x3")
    np.testing.assert_allclose(result["static"], here.probabilities, rtol=1e-6)
