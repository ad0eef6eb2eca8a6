"""Run an official reference vector (``shared/reference/*.npz`` + JSON sidecar) through videploy.

``run_vector(npz_path)`` reads the vector and its sidecar, builds our module from the sidecar's
official constructor arguments through the public API only (``videploy.models.create`` and
``load_checkpoint``), performs the sidecar's call on the saved inputs and returns every
``out/`` array by name. It is written for the general case (any configuration, any of the
official calls spelled in a sidecar), because unshared vectors of other configurations are run
through it too; nothing here knows the public vectors' sizes.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import videploy.models as vm

# official class name -> our registry family
FAMILY_OF_CLASS = {
    "VideoFocalNet": "video_focalnet",
    "VisionTransformer": "stam",
    "MobileNetV2": "mobilenet_v2",
    "ResNet": "resnet",
    "SpatialPolicy": "spatial_policy",
    "TemporalPolicy": "temporal_policy",
    "PoolingClassifier": "pooling_classifier",
}
# constructor kwargs that only place tensors on a device upstream; meaningless for us
_DEVICE_KWARGS = ("device",)


def official_functions() -> dict[str, Callable[..., Any]]:
    """Official module-level functions -> ours (same keyword names)."""
    from videploy.models import adafocusv3
    from videploy.models.blocks import temporal_shift

    return {
        "get_patch_grid_scalexy": adafocusv3.get_patch_grid_scalexy,
        "policy_sample_indices": adafocusv3.policy_sample_indices,
        "MCSampleFeature": adafocusv3.mc_sample_feature,
        # the official static method: its inplace keyword and its default fold_div (3, not 8)
        "TemporalShift.shift": temporal_shift.TemporalShift.shift,
        "shift": temporal_shift.TemporalShift.shift,
    }


def load_vector(npz_path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    npz_path = Path(npz_path)
    meta = json.loads(npz_path.with_suffix(".json").read_text())
    z = np.load(npz_path)
    groups: dict[str, dict[str, np.ndarray]] = {"sd": {}, "in": {}, "out": {}, "mid": {}}
    for key in z.files:
        prefix, _, name = key.partition("/")
        groups.setdefault(prefix, {})[name] = z[key]
    return meta, groups


def constructor_kwargs(constructor: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Our family name and kwargs from a sidecar ``constructor`` (nested official objects become dicts)."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict) and "class_ref" in value:
            # a class passed as argument: torch's own (a norm_layer such as "LayerNorm" or
            # "torch.nn.BatchNorm2d") is the class itself; an upstream one (ResNet's block) stays its name
            ref = str(value["class_ref"])
            torch_cls = getattr(torch.nn, ref.rsplit(".", 1)[-1], None)
            return torch_cls if isinstance(torch_cls, type) else ref
        if isinstance(value, dict) and "class" in value and "kwargs" in value:
            return {k: convert(v) for k, v in value["kwargs"].items()}
        return value

    cls = constructor["class"]
    if cls not in FAMILY_OF_CLASS:
        raise KeyError(f"no videploy family for official class {cls!r}")
    kwargs = {k: convert(v) for k, v in constructor["kwargs"].items() if k not in _DEVICE_KWARGS}
    return FAMILY_OF_CLASS[cls], kwargs


def _strip_comment(text: str) -> str:
    # sidecar calls carry explanations after the code: "...(x)   (Class.forward)" or "...(x)  [= ...]"
    return re.split(r"\s{2,}[\(\[]", text.strip(), maxsplit=1)[0].strip()


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    # reshape: np.ascontiguousarray turns 0-d arrays (num_batches_tracked) into shape (1,)
    return torch.from_numpy(np.ascontiguousarray(a).reshape(a.shape))


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.numpy()
    return np.asarray(x)


_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
}


def _eval_arg(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise KeyError(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        # constant arithmetic such as patch_size=96 // 32
        return _ARITHMETIC[type(node.op)](_eval_arg(node.left, env), _eval_arg(node.right, env))
    return ast.literal_eval(node)


def _run_statements(code: str, target: Any, inputs: dict[str, torch.Tensor], functions: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    """Execute ``a, b = model.method(x); c = model(y)`` style statements without ``exec``."""
    env: dict[str, Any] = dict(inputs)
    results: dict[str, Any] = {}
    for stmt in ast.parse(code).body:
        if isinstance(stmt, ast.Assign):
            targets, call = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.Expr):
            targets, call = None, stmt.value
        else:
            raise ValueError(f"unsupported statement in sidecar call: {ast.unparse(stmt)}")
        assert isinstance(call, ast.Call), ast.unparse(stmt)
        fname = ast.unparse(call.func)
        if fname == "model":
            fn = target
        elif fname.startswith("model."):
            fn = getattr(target, fname[len("model."):])
        else:
            # a module-qualified spelling ("models.uni_adafocus.policy_sample_indices") names the same function
            parts = fname.split(".")
            known = [".".join(parts[i:]) for i in range(len(parts)) if ".".join(parts[i:]) in functions]
            if not known:
                raise KeyError(f"sidecar calls {fname!r}, which is not one of the official functions {sorted(functions)}")
            fn = functions[known[0]]
        # the sidecar may name an argument after its role ("patches" for the "frames" input): such
        # names take, in order, the inputs that no argument of this call names
        named = {n.id for n in ast.walk(call) if isinstance(n, ast.Name)}
        spare = [v for k, v in inputs.items() if k not in named]

        def arg_value(node: ast.AST) -> Any:
            try:
                return _eval_arg(node, env)
            except KeyError:
                if not spare or not isinstance(node, ast.Name):
                    raise
                return spare.pop(0)

        args = [arg_value(a) for a in call.args]
        kwargs = {kw.arg: arg_value(kw.value) for kw in call.keywords}
        with torch.no_grad():
            value = fn(*args, **kwargs)
        if targets is None:
            continue
        names = [ast.unparse(e) for e in targets.elts] if isinstance(targets, ast.Tuple) else [ast.unparse(targets)]
        values = list(value) if len(names) > 1 else [value]
        if len(values) != len(names):
            raise ValueError(f"{fname} returned {len(values)} values, the sidecar expects {len(names)} ({names})")
        for n, v in zip(names, values):
            if n != "_":
                env[n] = v
                results[n] = v
    return results


def run_vector(npz_path: str | Path) -> dict[str, np.ndarray]:
    """Every ``out/`` array of the vector, recomputed by videploy, by name."""
    meta, arrays = load_vector(npz_path)
    inputs = {k: _to_tensor(v) for k, v in arrays["in"].items()}
    wanted = list(arrays["out"])
    functions = official_functions()
    torch.manual_seed(0)

    if "constructor" in meta:
        family, kwargs = constructor_kwargs(meta["constructor"])
        model = vm.create(family, **kwargs)
        vm.load_checkpoint(model, {k: _to_tensor(v) for k, v in arrays["sd"].items()})
        model.eval()
        results = _run_statements(_strip_comment(meta["call"]), model, inputs, functions)
    elif "function_calls" in meta:
        results = {}
        for out_name, call in meta["function_calls"].items():
            expr = ast.parse(_strip_comment(call), mode="eval").body
            res = _run_statements(f"{out_name} = {ast.unparse(expr)}", None, inputs, functions)
            results.update(res)
    elif "shift_config" in meta:
        cfg = meta["shift_config"]
        (x,) = inputs.values()
        results = {f"shift_div{d}": functions["shift"](x, n_segment=cfg["n_segment"], fold_div=d) for d in cfg["fold_divs"]}
    else:
        raise ValueError(f"{npz_path}: sidecar has neither constructor, function_calls nor shift_config")

    missing = [n for n in wanted if n not in results]
    if missing:
        raise KeyError(f"{npz_path}: the call produced no {missing}")
    return {n: _to_numpy(results[n]) for n in wanted}
