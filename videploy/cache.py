"""Where videploy keeps what it can rebuild: demo clips, recorded calibration inputs and ranges,
TensorRT engines of read-only bundles.

One root for all of it, so one variable moves or clears it: ``$VIDEPLOY_CACHE``, else
``$XDG_CACHE_HOME/videploy``, else ``~/.cache/videploy``. Deleting it is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "VIDEPLOY_CACHE"


def cache_root() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "videploy"
