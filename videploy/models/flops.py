"""GFLOPs as the papers count them: multiply-accumulates (MACs) of the heavy ops, in units of 1e9.

What is counted
    Every convolution (any dimensionality, grouped and depthwise included), every linear layer
    and every matrix product (``mm``, ``addmm``, ``bmm``, ``baddbmm``: ``matmul``/``einsum``
    lower to these), and attention products: ``scaled_dot_product_attention`` counts Q@K^T and
    A@V for whichever kernel runs (including the CPU flash kernel, which PyTorch's table misses).
    One MAC per multiply-add; a bias add is not counted.

What is not counted
    Elementwise work: BatchNorm/LayerNorm, activations, softmax, residual adds, pooling,
    resampling (GridSample), data movement (temporal shift, reshapes), attention masking/scaling.

Why this matches the papers
    The AdaFocusV3 paper ("multiply-add operations"), Video-FocalNet and STAM report "GFLOPs" that
    are really GMACs of convs and linears, the convention of the usual counters (thop, fvcore,
    ptflops). Checked against the official Uni-AdaFocus constants
    (ops/early_exit_uni_adafocus.py): MobileNetV2 features at 224x224 = 0.299511328 and ResNet-50
    features on a 96/128/160/192 patch = 0.750725056/1.334601664/2.08530016/3.002820544 are our
    conv MACs plus, exactly, the networks' total BatchNorm channel count (17,056 and 26,560, the
    same at every resolution: their counter charged each BN once per channel, not per pixel), a
    difference below 0.006%. Elementwise ops would add well under 1% for these models anyway.
    Attention products are the one place where conventions differ: counters built on module hooks
    (thop, ptflops) see only layers with weights, and STAM's published 270 GFLOPs for STAM-16 is
    exactly that (our count: 270.1 without, 281.6 with the 11.4 GMACs of Q @ K^T and A @ V).
    The default, ``attention=False``, is the papers' convention (layers with weights); pass
    ``attention=True`` for the work really done, attention products included.

How
    The model is run once under ``torch.utils.flop_counter.FlopCounterMode`` (an op-level
    dispatch hook, so shapes are the real ones: dynamic crops, per-step heads, tuples of outputs
    all count as executed). PyTorch counts FLOPs = 2 x MACs, hence the division by 2. The
    counting works on the ``meta`` device too, which makes full-size counts nearly free.
    While counting, fused inference fast paths that hide their matmuls in one opaque op
    (``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` fast path) are switched off,
    so their products are seen; the numbers do not change, only their visibility.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from videploy.errors import VideployError

Inputs = torch.Tensor | tuple[Any, ...] | list[Any] | Mapping[str, Any]


def _sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs (2 x MACs) of Q @ K^T and softmax(.) @ V; heads of K/V may be fewer (GQA), masks are free."""
    b, h, s_q, d_qk = query_shape[-4:]
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * s_q * s_k * (d_qk + d_v)


def _formulas() -> dict[Any, Any]:
    """Overrides of PyTorch's flop table: the attention kernels it misses."""
    from torch.utils import flop_counter

    extra: dict[Any, Any] = {}
    # The CPU flash kernel (what SDPA runs on CPU for equal head dims) is missing from the table.
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        op = getattr(torch.ops.aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            extra[op] = _sdpa_flops
    return extra


class _AttentionTally(TorchFunctionMode):
    """Adds up the MACs of Q @ K^T and A @ V of every ``scaled_dot_product_attention`` call.

    Tallied at the Python function, not at the kernel, because which kernel runs (flash, math
    path lowered to bmm, meta decomposition) depends on device and shapes; the product count
    does not.
    """

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            names = ("query", "key", "value")
            q, k, v = (args[i] if i < len(args) else kwargs[n] for i, n in enumerate(names))
            batch_heads = math.prod(q.shape[:-2])
            self.macs += batch_heads * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return func(*args, **kwargs)


@contextlib.contextmanager
def _no_fused_attention_fastpath() -> Iterator[None]:
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):  # pragma: no cover - torch < 2.2
        yield
        return
    was = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(was)


def _call(model: nn.Module, inputs: Inputs) -> None:
    if isinstance(inputs, torch.Tensor):
        model(inputs)
    elif isinstance(inputs, Mapping):
        model(**inputs)
    elif isinstance(inputs, (tuple, list)):
        model(*inputs)
    else:
        raise VideployError(f"count_gflops: inputs must be a tensor, a tuple/list of positional inputs or a dict of keyword inputs, got {type(inputs).__name__}")


def _count(model: nn.Module, inputs: Inputs) -> tuple[FlopCounterMode, _AttentionTally]:
    counter = FlopCounterMode(display=False, custom_mapping=_formulas())
    tally = _AttentionTally()
    with torch.no_grad(), _no_fused_attention_fastpath(), counter, tally:
        _call(model, inputs)
    return counter, tally


def count_gflops(model: nn.Module, inputs: Inputs, *, attention: bool = False) -> float:
    """GMACs ("GFLOPs" in the papers' sense) of one ``model(*inputs)`` call, for exactly these inputs.

    ``inputs``: one tensor, a tuple/list of positional inputs, or a dict of keyword inputs. The
    count is for the whole batch given: divide by the batch size for a per-sample figure. Meta
    tensors (model and inputs on ``torch.device("meta")``) give the same count without computing.
    The model runs in its current mode: call ``.eval()`` first for inference costs.

    By default (``attention=False``) the attention products Q @ K^T and A @ V of
    ``scaled_dot_product_attention`` are left out, i.e. only layers with weights count: the
    convention of module-hook counters and of the STAM paper's 270 GFLOPs for STAM-16 (281.6
    with attention). ``attention=True`` counts them too.
    """
    counter, tally = _count(model, inputs)
    macs = counter.get_total_flops() / 2
    if not attention:
        macs -= tally.macs
    return macs / 1e9


def gflops_by_module(model: nn.Module, inputs: Inputs, depth: int = 1) -> dict[str, float]:
    """GMACs per submodule (attention products included, unlike :func:`count_gflops`'s default) ``depth`` levels below ``model`` (names relative to it, e.g. ``layer3``).

    A container that is never called itself (``nn.ModuleList``) gets the sum of its called
    children. Work done directly in shallower modules' ``forward`` (functional matmuls, say) is
    reported under ``"(rest)"``, so the values always sum to :func:`count_gflops`. A submodule
    called several times is reported once with its total.
    """
    if depth < 1:
        raise VideployError(f"gflops_by_module: depth must be >= 1, got {depth}")
    counts = _count(model, inputs)[0].get_flop_counts()
    total = sum(counts.get("Global", {}).values())
    # The tracker names the root by its class and every called submodule by its dotted path below it.
    root = type(model).__name__ + "."
    tracked = {name[len(root) :]: sum(per_op.values()) for name, per_op in counts.items() if name.startswith(root)}
    out: dict[str, float] = {}
    for rel, flops in tracked.items():
        parts = rel.split(".")
        if len(parts) < depth:
            continue
        # Count a module only where no called ancestor at or below ``depth`` already includes it.
        if any(".".join(parts[:n]) in tracked for n in range(depth, len(parts))):
            continue
        key = ".".join(parts[:depth])
        out[key] = out.get(key, 0.0) + flops / 2 / 1e9
    rest = total / 2 / 1e9 - sum(out.values())
    if abs(rest) > 1e-12:
        out["(rest)"] = rest
    return out
