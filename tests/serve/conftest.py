"""Serving tests need the ``serve`` extra; in CI they must run, never skip."""

from __future__ import annotations

import os

import pytest


def require_serving() -> None:
    """Skip (fail in CI) unless PyTriton, tritonclient and a NumPy PyTriton accepts are installed."""
    from videploy.errors import VideployError

    reason = None
    for module in ("pytriton.triton", "tritonclient.http", "tritonclient.grpc"):
        try:
            __import__(module)
        except ImportError as exc:
            reason = f"{module} is not installed ({exc}); pip install -e '.[serve]'"
            break
    if reason is None:
        from videploy.serve.triton import check_pytriton_numpy

        try:
            check_pytriton_numpy()
        except VideployError as exc:
            reason = str(exc)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"serving tests must run in CI: {reason}")
        pytest.skip(reason)
