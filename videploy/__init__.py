"""videploy: take efficient video-recognition models from PyTorch to ONNX / TensorRT and run them.

Pipeline (one folder per stage): ``models`` -> ``export`` -> bundle directory -> ``runtime``.
``calibration`` fits post-training data (INT8, exit thresholds); ``bundle`` is the contract
between export and runtime. Importing this package imports nothing heavy.
"""

from videploy.errors import VideployError

__version__ = "0.1.0"

__all__ = ["VideployError", "__version__"]
