"""Offline batch inference over video collections, on Ray Data.

    from videploy.offline import predict_dataset, PredictOptions, ScaleOptions, read_results
    summary = predict_dataset("bundle/", "videos/", "predictions/", PredictOptions(top_k=5), ScaleOptions(actors=2))
    df = read_results("predictions/")          # or pandas.read_parquet("predictions/")

The torch-free runtime runs unchanged inside Ray Data stages (``ray_pipeline``): CPU tasks decode,
a pool of actors each holding the bundle predicts, and the driver writes Parquet shards atomically
(``output``), which are also what a re-run resumes from. ``dataset`` turns a directory, a glob or
a CSV into the list of videos. Ray, pyarrow and pandas come with ``pip install 'videploy[ray]'``;
this package imports them only when a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from videploy.offline.api import Progress, RunSummary, predict_dataset
    from videploy.offline.options import PredictOptions, ScaleOptions
    from videploy.offline.output import read_results

__all__ = ["PredictOptions", "Progress", "RunSummary", "ScaleOptions", "predict_dataset", "read_results"]

_WHERE = {
    "predict_dataset": "api",
    "Progress": "api",
    "RunSummary": "api",
    "PredictOptions": "options",
    "ScaleOptions": "options",
    "read_results": "output",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"videploy.offline.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'videploy.offline' has no attribute {name!r}")
