"""Reusable backbones and blocks with official state-dict key names.

Importing this package registers the component families ``mobilenet_v2`` and ``resnet``.
"""

from videploy.models.blocks import mobilenet_v2, resnet, temporal_shift  # noqa: F401

__all__ = ["mobilenet_v2", "resnet", "temporal_shift"]
