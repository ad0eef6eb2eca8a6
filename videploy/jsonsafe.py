"""The one JSON encoding of non-finite floats, for every JSON videploy writes.

JSON has no NaN or infinities, and strict parsers reject the ``NaN`` / ``Infinity`` tokens that
Python's ``json`` emits by default. videploy writes them as the strings ``"inf"``, ``"-inf"`` and
``"nan"`` (finite numbers stay numbers) and always serialises with ``allow_nan=False``, so a
non-finite value that slipped through is an error, never a non-standard token.
"""

from __future__ import annotations

import json
import math
from typing import Any

NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_float(x: float) -> float | str:
    """``x`` itself when finite, else ``"inf"``, ``"-inf"`` or ``"nan"``."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def decode_float(v: Any) -> float:
    """The inverse of :func:`encode_float` (also accepts ``"+inf"``); raises ValueError otherwise."""
    if isinstance(v, str):
        key = v.strip().lower().lstrip("+") if v.strip().lower() in ("inf", "+inf", "-inf", "nan") else None
        if key is None:
            raise ValueError(f"not a number: {v!r}")
        return NONFINITE[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"not a number: {v!r}")
    return float(v)


def sanitize(obj: Any) -> Any:
    """``obj`` with every float (in dicts, lists, tuples, numpy scalars) encoded by :func:`encode_float`."""
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, float) or type(obj).__name__ in ("float32", "float64", "float16"):
        return encode_float(obj)
    if type(obj).__name__.startswith(("int", "uint")) and hasattr(obj, "item"):
        return obj.item()
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`sanitize`\\ (obj), strict (``allow_nan=False``)."""
    return json.dumps(sanitize(obj), allow_nan=False, **kwargs)
