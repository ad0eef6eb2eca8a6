"""``videploy inspect``: what a bundle holds, readable (or the manifest as JSON). Needs no torch."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from videploy import jsonsafe
from videploy.jsonsafe import decode_float

DESCRIPTION = """\
Show a bundle's manifest as a summary: the model and whether its weights are real or RANDOM,
every graph with its inputs/outputs (names, shapes, dtypes), file sizes, precision, TensorRT
engines, GFLOPs per graph and per exit (AdaFocusV3), preprocessing, the verification result
of the export, the INT8 calibration (what stayed in float and the INT8-vs-FP32 agreement
report, after 'videploy quantize'), and provenance (versions, opset, checkpoint hash). The manifest is validated
(paths stay inside the bundle, every listed file exists) before anything is shown.
"""

EPILOG = """\
examples:
  videploy inspect vfn_t/
  videploy inspect ada/ --json | jq .early_exit
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from videploy.cli.options import verbose_parent

    p = subparsers.add_parser(
        "inspect",
        help="summarise a bundle (graphs, I/O, GFLOPs, verification, provenance)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    p.add_argument("bundle", metavar="DIR", help="bundle directory")
    p.add_argument("--json", action="store_true", help="print the validated manifest as JSON")
    p.set_defaults(func=run)
    return p


def _size(path: Path) -> str:
    n = path.stat().st_size
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def _num(v: Any) -> float:
    """A verification number as written by videploy.jsonsafe ("inf", "nan" strings included); -inf if absent."""
    try:
        return decode_float(v)
    except ValueError:
        return -math.inf


def _fmt_num(v: Any, spec: str) -> str:
    x = _num(v)
    return format(x, spec) if math.isfinite(x) else str(v)


def _shape(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def run(args: argparse.Namespace) -> int:

    from videploy.cli.options import stdout_console
    from rich.table import Table

    from videploy.bundle.bundle import Bundle

    bundle = Bundle.open(args.bundle)
    root, m = bundle.root, bundle.manifest
    out = stdout_console()
    if args.json:
        # plain print: rich's print_json re-parses the text (recursively), which deep manifests must not need
        print(jsonsafe.dumps(m.to_dict(), indent=2))
        return 0

    if m.weights:
        weights = f"{m.weights.get('file', '?')} (sha256 {str(m.weights.get('sha256', '?'))[:16]}...)"
    else:
        weights = "[bold red]RANDOM (no checkpoint given at export; predictions are meaningless)[/]"
    out.print(f"[bold]{m.model_name}[/] ({m.family}), {m.num_classes} classes, bundle format {m.format_version}")
    out.print(f"weights: {weights}")
    out.print(f"labels: {m.labels or 'none (class indices only)'}")
    out.print(f"precision of the graphs: {m.precision}; opset {m.opset}; batch min {m.batch.min} opt {m.batch.opt} max {m.batch.max}" + ("" if m.batch.dynamic else " (fixed)"))
    p = m.preprocessing
    out.print(
        f"preprocessing: {p.num_frames} frames, {p.sampling} sampling (interval {p.frame_interval}), resize short side {p.resize_short or 'straight'} -> "
        f"crop {p.crop_size[0]}x{p.crop_size[1]}, {p.channel_order} x {p.scale:g}, mean {list(p.mean)}, std {list(p.std)}, layout {p.layout}; "
        f"official test views {p.num_clips} clip(s) x {p.num_crops} crop(s)",
        highlight=False,
    )
    out.print(f"GFLOPs per view: {m.gflops_per_view:.3f}")

    for g in m.graphs:
        out.print(f"[bold]graph '{g.role}'[/]: {g.file} ({_size(root / g.file)}), {g.gflops:.4f} GFLOPs per video per call")
        io = Table(show_header=True, box=None, padding=(0, 2, 0, 4))
        for col in ("", "name", "shape", "dtype"):
            io.add_column(col)
        for t in g.inputs:
            io.add_row("in", t.name, _shape(t.shape), t.dtype)
        for t in g.outputs:
            io.add_row("out", t.name, _shape(t.shape), t.dtype)
        out.print(io)
        for prec, f in g.engines.items():
            out.print(f"    engine {prec}: {f} ({_size(root / f)})", highlight=False)
        for prec, f in g.variants.items():
            out.print(f"    {prec} graph: {f} ({_size(root / f)})", highlight=False)
        if not g.engines:
            out.print("    engines: none (videploy build DIR --precision fp16)", highlight=False)

    if m.early_exit is not None:
        e = m.early_exit
        rule = "stop when entropy <= threshold, nats" if e.criterion == "entropy" else "stop when max logit >= threshold"
        ex = Table(title=f"exits ({rule}; glance frames {list(e.glance_indices)} of {e.num_segments}, {e.num_steps} steps, patch {e.patch_size})")
        for col in ("exit", "after", "cumulative GFLOPs", "threshold"):
            ex.add_column(col)
        for t, gf in enumerate(e.exit_gflops):
            th = "not calibrated" if e.thresholds is None else f"{e.thresholds[t]:g}"
            ex.add_row(str(t), "glance" if t == 0 else f"local step {t}", f"{gf:.3f}", th)
        out.print(ex)

    v = m.verification
    if v is None:
        out.print("verification: [bold red]none recorded[/]")
    else:
        status = "[green]passed[/]" if v.get("passed") else "[bold red]FAILED[/]"
        out.print(f"verification {status}: {v.get('backend', '')}; {v.get('inputs', '')}; batch sizes {v.get('batch_sizes')}", highlight=False)
        out.print(f"  criterion: {v.get('criterion', '')}", highlight=False)
        worst: dict[str, dict] = {}
        for row in v.get("outputs", []):
            key = f"{row['graph']}.{row['output']}"
            cur = worst.get(key)
            if cur is None or _num(row.get("max_rel")) > _num(cur.get("max_rel")):
                worst[key] = row
        vt = Table()
        for col in ("output", "worst call", "max abs", "max rel", "cosine", "top-1"):
            vt.add_column(col, no_wrap=True)
        for key, row in worst.items():
            if row.get("exact"):
                vt.add_row(key, row["call"], "exact" if row.get("passed") else "DIFFERS", "", "", "")
            else:
                top1 = "" if row.get("top1") is None else _fmt_num(row["top1"], ".0%")
                vt.add_row(key, row["call"], _fmt_num(row["max_abs"], ".2e"), _fmt_num(row["max_rel"], ".2e"), _fmt_num(row["cosine"], ".7f"), top1)
        out.print(vt)

    prov = dict(m.provenance)
    trt = prov.pop("tensorrt", None)
    int8 = prov.pop("int8", None)
    if int8:
        _print_int8(out, int8)
    out.print("provenance: " + ", ".join(f"{k} {v}" for k, v in prov.items() if not isinstance(v, dict) and v not in (None, "")), highlight=False)
    if trt:
        for prec, info in trt.items():
            out.print(f"TensorRT {prec}: {info}", highlight=False)
    return 0


def _print_int8(out: Any, record: dict) -> None:
    from videploy.calibration.int8.agreement import summary_lines
    from videploy.cli.quantize import float_lines

    cal = record.get("calibration", {})
    out.print(
        f"[bold]INT8[/]: {record.get('tool', '')}, {record.get('method', '?')} calibration on {cal.get('clips', '?')} clip(s) "
        f"of {len(cal.get('videos', []))} video(s)" + (" (pipeline-aware: each graph on the inputs the FP32 chain fed it)" if cal.get("pipeline_aware") else ""),
        highlight=False,
    )
    for variant, desc in (record.get("variants") or {}).items():
        out.print(f"  {variant}: for {desc.get('target')}; activations {desc.get('activations')}, weights {desc.get('weights')}, bias {desc.get('bias')}", highlight=False)
    for line in float_lines(record):
        out.print("  " + line, highlight=False)
    for report in (record.get("agreement") or {}).values():
        for line in summary_lines(report):
            out.print("  " + line, highlight=False)
