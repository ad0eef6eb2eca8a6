"""What a benchmark number was measured on: CPUs, load, library versions, thread settings.

A ratio without its machine is not reproducible. Versions come from the installed package
metadata, so reporting torch's version never imports torch (the runtime side must work without
it). The environment variables that change thread counts are read here and only here.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

# Environment variables that change how many threads the numeric libraries use.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PACKAGES = ("videploy", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "torch", "tensorrt", "tensorrt-cu13", "tensorrt-cu12", "opencv-python", "opencv-python-headless")


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo), e.g. 'AMD EPYC ...' or 'Intel(R) Xeon(R) ...'."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux: /proc/self/clear_refs); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process since start or the last :func:`reset_peak_rss` (VmHWM), in MiB."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def machine_info() -> dict[str, Any]:
    """A JSON-able description of this machine and the software versions a benchmark ran with."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not available on this platform
        load = None
    versions = {p: v for p in PACKAGES if (v := package_version(p)) is not None}
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "load_average_1_5_15min": load,
        "thread_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        "versions": versions,
    }


def describe(info: dict[str, Any]) -> str:
    """One line for a table header."""
    v = info["versions"]
    parts = [f"{info['usable_cpus']}/{info['cpu_count']} CPUs", info.get("cpu_model") or info["processor"], f"python {info['python']}"]
    for p in ("onnxruntime", "onnxruntime-gpu", "torch", "tensorrt"):
        if p in v:
            parts.append(f"{p} {v[p]}")
    if info["thread_env"]:
        parts.append(" ".join(f"{k}={val}" for k, val in info["thread_env"].items()))
    if info["load_average_1_5_15min"]:
        parts.append("load " + "/".join(f"{x:g}" for x in info["load_average_1_5_15min"]))
    return ", ".join(str(p) for p in parts if p)
