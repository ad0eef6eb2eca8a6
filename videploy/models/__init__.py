"""PyTorch models of the zoo: build (``create``), load official checkpoints, count GFLOPs.

Importing this package imports torch and registers every family.
"""

from videploy.models.registry import REGISTRY, available, create, families, get, resolve_kwargs

# Family modules register themselves on import; the order is the listing order.
from videploy.models import video_focalnet as _video_focalnet  # noqa: F401,E402
from videploy.models import stam as _stam  # noqa: F401,E402
from videploy.models import blocks as _blocks  # noqa: F401,E402  (component families: mobilenet_v2, resnet)
from videploy.models import adafocusv3 as _adafocusv3  # noqa: F401,E402

from videploy.models.checkpoint import load_checkpoint  # noqa: E402
from videploy.models.flops import count_gflops  # noqa: E402
from videploy.models.official_config import from_official_config  # noqa: E402

__all__ = [
    "REGISTRY",
    "available",
    "count_gflops",
    "create",
    "families",
    "from_official_config",
    "get",
    "load_checkpoint",
    "resolve_kwargs",
]
