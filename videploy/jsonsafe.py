"""Strict JSON out: the one encoding of non-finite numbers for every JSON videploy writes.

JSON has no NaN or infinities. Python's ``json`` writes the tokens ``NaN`` / ``Infinity`` by
default, which strict parsers (``jq``, JavaScript's ``JSON.parse``, Go, Rust's serde) reject. So
videploy writes a non-finite float as a **string**:

==========  ===========
value       JSON
==========  ===========
+infinity   ``"inf"``
-infinity   ``"-inf"``
NaN         ``"nan"``
==========  ===========

Strings rather than ``null`` because the sign of an infinity matters (an exit threshold of
``-inf`` means "never exit here", ``inf`` "always exit"), and because a manifest written this way
reads back exactly (:func:`decode_float`). Every writer goes through :func:`dumps`, which applies
:func:`encode` and then ``json.dumps(..., allow_nan=False)``, so a missed float fails loudly
instead of producing invalid JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

NONFINITE = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_float(x: float) -> float | str:
    """``x`` as a JSON value: the float itself when finite, else ``"inf"``, ``"-inf"`` or ``"nan"``."""
    x = float(x)
    if math.isfinite(x):
        return x
    if math.isnan(x):
        return "nan"
    return "inf" if x > 0 else "-inf"


def decode_float(v: Any) -> float:
    """The inverse of :func:`encode_float`; raises ``ValueError`` for anything else (bools included)."""
    if isinstance(v, str) and v in NONFINITE:
        return NONFINITE[v]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, 'inf', '-inf' or 'nan', got {v!r}")
    return float(v)


def encode(obj: Any) -> Any:
    """``obj`` with every non-finite float (Python or numpy) encoded, tuples as lists, numpy scalars as Python ones."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, int):
        return obj
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    # numpy scalars and arrays without importing numpy here (this module is dependency-free)
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return encode(tolist())
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that always writes strict JSON (non-finite floats as documented above)."""
    kwargs["allow_nan"] = False
    return json.dumps(encode(obj), **kwargs)
