"""The bundle: the contract between export (writes it) and runtime (reads it). Torch-free."""

from videploy.bundle.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    BatchRange,
    EarlyExit,
    GraphSpec,
    Manifest,
    Preprocessing,
    TensorSpec,
    read_manifest,
    write_manifest,
)
from videploy.bundle.graph_check import check_graphs
from videploy.bundle.writer import prepare_output, repair_interrupted_swap, staged_bundle, updating_bundle

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BatchRange",
    "EarlyExit",
    "GraphSpec",
    "Manifest",
    "Preprocessing",
    "TensorSpec",
    "check_graphs",
    "prepare_output",
    "read_manifest",
    "repair_interrupted_swap",
    "staged_bundle",
    "updating_bundle",
    "write_manifest",
]
