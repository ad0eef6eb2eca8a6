"""INT8 post-training quantization of a bundle: explicit Q/DQ graphs calibrated on real videos.

``quantize_bundle(bundle, videos, out_dir, QuantizeOptions(...))`` is the use case behind
``videploy quantize``; see :mod:`videploy.calibration.int8.bundle` for the steps.
"""

from videploy.calibration.int8.bundle import (
    QuantizeOptions,
    QuantizeResult,
    quantize_bundle,
)

__all__ = ["QuantizeOptions", "QuantizeResult", "quantize_bundle"]
