"""Runs fuzz cases through the CLI in one process with a bounded address space (used by test_fuzz.py).

    python -m tests.bundle.fuzz_runner CASES.json RESULTS.json BOUND_BYTES

Each case is ``{"id": ..., "argv": [[...], ...]}``; every argv goes through ``videploy.cli.main``
with stdout/stderr captured. The outcome per argv: the exit code, the captured output, the
seconds it took, and the traceback if anything escaped ``main`` (which catches VideployError).
Results are rewritten after every case, so a process killed mid-run still names the case.
This module must not import torch (a device has none, and it would blow the memory bound).
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time
import traceback


def _vm_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main() -> int:
    cases_path, results_path, bound = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import cv2  # noqa: F401  (import the heavy libraries before measuring the baseline)
    import onnxruntime  # noqa: F401

    from videploy.cli import main as cli

    cases = json.loads(open(cases_path).read())
    # warm up on the first (unmutated) case, then cap the address space at what that needed plus the bound
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for argv in cases[0]["argv"]:
            cli(argv)
    baseline = _vm_kib("VmPeak") * 1024
    limit = baseline + bound
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    results = {"baseline_bytes": baseline, "limit_bytes": limit, "cases": []}
    for case in cases:
        outcomes = []
        for argv in case["argv"]:
            out, err = io.StringIO(), io.StringIO()
            t0 = time.perf_counter()
            tb = None
            code = None
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = cli(argv)
            except BaseException:  # noqa: BLE001 - anything escaping main is the failure we look for
                tb = traceback.format_exc()
            outcomes.append({"argv": argv, "code": code, "stdout": out.getvalue()[-20000:], "stderr": err.getvalue()[-4000:], "seconds": time.perf_counter() - t0, "traceback": tb})
        results["cases"].append({"id": case["id"], "outcomes": outcomes})
        with open(results_path, "w") as f:
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
