"""Load a checkpoint into a videploy model: read it safely, unwrap it, convert it, load it strictly.

``load_checkpoint(model, source)`` is the one entry point. ``source`` is a file (``torch.save``
output: an official release, a training-script checkpoint, our own; ``.safetensors``; ``.npz``), a
file already read with :func:`read_checkpoint_file`, or an in-memory state dict. The steps, one
module each:

1. **read** (:mod:`.reading`): always ``torch.load(weights_only=True)``, never ``False``. Official
   training scripts also pickle their configuration (Video-FocalNet saves a yacs ``CfgNode`` beside
   the weights; AdaFocus may store a numpy ``best_acc1``), which torch's allowlist refuses. So the
   global names a file references are first read from its pickle opcodes, streamed and bounded
   (:mod:`.pickle_scan`; nothing is unpickled): names that run code (``os.system``, ``eval``,
   ``subprocess`` ...) are refused at once; numpy values, paths and dates map to their data
   constructors; every other class becomes an inert stand-in (:mod:`.safe_globals`). A pickle that
   *calls* an unknown callable (REDUCE) is refused by name. videploy never executes code from a
   checkpoint. The file's SHA-256 is computed once here and carried to the report.
2. **unwrap** (:mod:`.unwrapping`): ``{"model": sd}``, ``{"state_dict": sd, "epoch": ...}``, a whole
   pickled module, and the ``module.`` / ``_orig_mod.`` wrapper prefixes (the one place they are
   stripped: :func:`strip_wrapper_prefixes`).
3. **convert** with the model's family ``convert`` (official key names -> ours).
4. **load strictly** (:mod:`.loading`); on a mismatch the error (:mod:`.diagnostics`) names the
   missing / unexpected / wrongly shaped keys, groups them by the family's parts, and says which
   configuration the checkpoint fits or which other family it belongs to.
"""

from __future__ import annotations

from videploy.models.checkpoint.loading import LoadReport, load_checkpoint
from videploy.models.checkpoint.reading import CheckpointFile, ChecksumMismatch, file_sha256, read_checkpoint, read_checkpoint_file
from videploy.models.checkpoint.safe_globals import CodeInCheckpoint, unresolved_class
from videploy.models.checkpoint.unwrapping import strip_wrapper_prefixes, unwrap_state_dict

__all__ = [
    "CheckpointFile",
    "ChecksumMismatch",
    "CodeInCheckpoint",
    "LoadReport",
    "file_sha256",
    "load_checkpoint",
    "read_checkpoint",
    "read_checkpoint_file",
    "strip_wrapper_prefixes",
    "unresolved_class",
    "unwrap_state_dict",
]
