"""``videploy bench``: latency and throughput of a bundle, per backend and batch size, as ratios."""

from __future__ import annotations

import argparse
import math
import shlex
from typing import Any
from videploy import jsonsafe

DESCRIPTION = """\
Measure how fast a bundle runs here, and report it the way that survives a noisy machine:
as RATIOS between backends measured side by side in one run, with the raw numbers, the machine
(CPUs, load, library versions, threads) and the exact command.

How it measures: every case gets --warmup untimed calls, then --repeat timed calls with
time.perf_counter; the backends are INTERLEAVED (A B A B ...) so drift from other jobs hits all
of them alike. Reported: median, p90 and interquartile range (IQR) of the wall time, and
throughput at the median. Inputs are real decoded frames (the sample video, or --video files).

What it measures:
  graph latency     one backend call per graph role and --batch size, outputs fetched to the host;
                    onnxruntime vs the PyTorch reference (torch, when installed) vs TensorRT
                    engines (when installed, with a GPU and engines from 'videploy build'). A
                    backend that cannot run here is skipped with a one-line reason.
  decode            OpenCV decode + sampling + resize/crop/normalise of one video, separately,
                    so you see where the time goes (no backend makes decoding faster).
  end to end        on --videos distinct clip files (96 frames each, in a temporary directory)
                    cut from --video (the sample video by default), with the first backend
                    that runs: decoding alone, the model alone, and both as
                    'videploy predict' runs them (--decode-workers threads decoding ahead, and
                    inline); 'vs slower stage' = end-to-end throughput / the slower stage's.
                    AdaFocusV3: every step and early exit, focus frames prepared only for the
                    videos that reach them (lazy) and all up front (eager), and the share of
                    the GFLOPs-predicted time saving that early exit realised end to end.
                    Give several different files: copies of one video all exit alike.
  whole model       AdaFocusV3: glance, policy and every local step through the runtime's
                    chain, every exit forced, on every backend and --batch size: what a video
                    costs (graphs timed one call at a time run colder); --set-default uses it.
  AdaFocusV3 only   on a stream of --videos clips, with the first backend that runs:
                    early exit vs all focus steps: GFLOPs per video from the runtime's
                    accounting and measured time, as ratios; static vs continuous batching:
                    throughput and the local-encoder occupancy (rows per call), with results
                    checked identical. Thresholds: --thresholds, else --budget, else the
                    bundle's, else fitted so an equal share of the clips leaves at each exit.

Speed goals belong here, never in tests: re-run and compare ratios, not absolute times, across
machines.
"""

EPILOG = """\
examples:
  videploy bench vfn_t/                                  onnxruntime vs torch, batch 1 and 4
  videploy bench vfn_t/ --backend onnxruntime --batch 1,8 --threads 4
  videploy bench vfn_t/ --backend onnxruntime,tensorrt --device cuda   GPU (after videploy build)
  videploy bench ada/ --budget 8.5 --videos 16           AdaFocusV3 at ~8.5 GFLOPs/video
  videploy bench ada/ --thresholds 0.5,0.8,0.8,inf,...   one eta per exit (glance first)
  videploy bench stam/ --repeat 30 --warmup 5 --json > bench.json
  videploy bench vfn_t/ --backend onnxruntime,openvino --batch 1,8 --threads 2 --set-default
                                                         predict then runs vfn_t/ on the faster one

reading the output:
  speedup 1.80x   this backend ran the graph in 1/1.8 of the reference's median time
  p90, IQR        spread: a large IQR means the machine was busy; raise --repeat
  occupancy       local-encoder rows per call / batch size (continuous batching keeps it high)
  vs slower stage 100%: decoding is hidden behind the model (or the reverse); on a CPU where the
                  model already uses every core, both compete and it stays well below

exit status: 0 measured; 2 an error (bad bundle or arguments, or no backend could run).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from videploy.cli.options import add_exit_threshold_arguments, verbose_parent

    p = subparsers.add_parser(
        "bench",
        help="latency / throughput per backend and batch size, as ratios",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by 'videploy export'")
    p.add_argument("--backend", default="onnxruntime,torch,tensorrt", metavar="B1,B2", help="backends to compare, comma-separated (default onnxruntime,torch,tensorrt; those that cannot run are skipped); NAME@VARIANT runs a graph variant, e.g. onnxruntime,onnxruntime@int8-cpu for INT8 next to FP32")
    p.add_argument("--batch", default="1,4", metavar="N1,N2", help="batch sizes for graph latency (default 1,4; sizes outside the bundle's range are skipped)")
    p.add_argument("--repeat", type=int, default=10, metavar="N", help="timed repetitions per case (default 10)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed warm-up calls per case (default 2)")
    p.add_argument("--threads", type=int, metavar="N", help="intra-op threads for onnxruntime and torch (default: each library's own choice)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu (default), cuda, or tensorrt (onnxruntime's TensorRT provider); the tensorrt backend always uses cuda")
    p.add_argument("--precision", metavar="P", help="graph / engine variant: fp32, fp16, int8 (default: the exported graph; tensorrt: the bundle's engines)")
    p.add_argument("--checkpoint", metavar="PATH", help="torch backend: the checkpoint the bundle was exported from (not needed for random-weight bundles)")
    p.add_argument("--video", action="append", metavar="PATH", help="video file to take frames from (repeatable; default: the sample video)")
    p.add_argument("--videos", type=int, default=8, metavar="N", help="clips in the input stream (default 8)")
    add_exit_threshold_arguments(p, fitted_on="the benchmark stream itself")
    p.add_argument("--stream-batch", type=int, metavar="N", help="AdaFocusV3: batch size for the stream benchmarks (default: the largest --batch)")
    p.add_argument("--decode-workers", type=int, default=1, metavar="N", help="end to end: threads decoding ahead of the model (default 1, as 'videploy predict')")
    p.add_argument("--no-end-to-end", dest="end_to_end", action="store_false", help="skip the end-to-end timing on real files (decode, model, both pipelined)")
    p.add_argument("--json", action="store_true", help="print the full report (every sample) as JSON")
    p.add_argument("--set-default", action="store_true", help="record the fastest FP32 CPU backend of this run in the bundle: 'videploy predict' uses it when --backend is not given (e.g. --backend onnxruntime,openvino --set-default)")
    p.add_argument("--out", metavar="DIR", help="also write the record to DIR: report.json (every sample), report.md, latency and (AdaFocusV3) exit-budget plots")
    p.set_defaults(func=run)
    return p


def parse_batches(text: str) -> list[int]:
    from videploy.errors import VideployError

    out = []
    for part in text.split(","):
        s = part.strip()
        if not s.isdigit() or int(s) < 1:
            raise VideployError(f"--batch {text!r}: {s!r} is not a batch size; use positive integers, e.g. --batch 1,4")
        out.append(int(s))
    return out


def command_line(args: argparse.Namespace) -> str:
    """The command with every setting spelled out, so a number can be reproduced."""
    parts = ["videploy", "bench", args.bundle, "--backend", args.backend, "--batch", args.batch, "--repeat", str(args.repeat), "--warmup", str(args.warmup), "--device", args.device, "--videos", str(args.videos)]
    for flag, value in (
        ("--threads", args.threads),
        ("--precision", args.precision),
        ("--checkpoint", args.checkpoint),
        ("--thresholds", args.thresholds),
        ("--budget", args.budget),
        ("--stream-batch", args.stream_batch),
        ("--decode-workers", args.decode_workers if args.decode_workers != 1 else None),
    ):
        if value is not None:
            parts += [flag, str(value)]
    for v in args.video or []:
        parts += ["--video", v]
    if not args.end_to_end:
        parts.append("--no-end-to-end")
    if args.json:
        parts.append("--json")
    if args.set_default:
        parts.append("--set-default")
    if args.out:
        parts += ["--out", args.out]
    return " ".join(shlex.quote(str(p)) for p in parts)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from videploy.cli.options import stdout_console

    from videploy.bench.backends import parse_backends
    from videploy.bench.bundle import bench_bundle
    from videploy.cli.options import parse_thresholds
    from videploy.errors import VideployError

    for flag, value, low in (("--repeat", args.repeat, 1), ("--warmup", args.warmup, 0), ("--videos", args.videos, 1), ("--threads", args.threads, 1), ("--stream-batch", args.stream_batch, 1), ("--decode-workers", args.decode_workers, 0)):
        if value is not None and value < low:
            raise VideployError(f"{flag} must be >= {low}, got {value}")
    err = Console(stderr=True, highlight=False)
    report = bench_bundle(
        args.bundle,
        backends=parse_backends(args.backend),
        batches=parse_batches(args.batch),
        repeat=args.repeat,
        warmup=args.warmup,
        threads=args.threads,
        device=args.device,
        precision=args.precision,
        checkpoint=args.checkpoint,
        videos=args.video,
        num_videos=args.videos,
        thresholds=parse_thresholds(args.thresholds),
        budget=args.budget,
        adaptive_batch=args.stream_batch,
        end_to_end=args.end_to_end,
        decode_workers=args.decode_workers,
        command=command_line(args),
        budget_sweep=(0.25, 0.5, 0.75) if args.out else (),
        progress=None if args.json else (lambda msg: err.print(f"[dim]{msg}[/]")),
    )
    if args.json:
        print(jsonsafe.dumps(report.to_dict(), indent=2))
    else:
        print_report(stdout_console(), report)
    if args.set_default:
        from videploy.bench.default_backend import choose_cpu_backend, record_choice

        choice = choose_cpu_backend(report)
        record_choice(args.bundle, choice, report)
        err.print(f"predict's default CPU backend for {args.bundle} is now {choice.backend}: {choice.reason}")
    if args.out:
        from videploy.bench.record import write_record

        written = write_record(report, args.out)
        err.print(f"benchmark record written to {args.out}: {', '.join(written)}")
    return 0


# --- tables -------------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.1 else f"{seconds * 1e3:.1f}"


def _rate(x: Any) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _threads(b: dict, machine: dict) -> str:
    if b.get("threads"):
        return f"{b['threads']} thread(s)"
    if b["name"] == "onnxruntime":
        return f"onnxruntime's default threads (one per physical core; {machine.get('usable_cpus', '?')} CPUs usable here)"
    return "the library's default threads"


def _x(r: float | None) -> str:
    return f"{r:.2f}x" if r is not None and math.isfinite(r) else "-"


def print_report(out: Any, report: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from videploy.bench.machine import describe

    d = report.to_dict()
    out.print(f"[bold]{d['model']}[/] ({d['family']}, {d['precision']}) from {d['bundle']}")
    if d["random_weights"]:
        out.print("[yellow]random weights[/]: speed does not depend on them, except where AdaFocusV3 videos exit")
    out.print(f"machine: {describe(d['machine'])}")
    s = d["settings"]
    out.print(f"settings: {s['warmup']} warm-up + {s['repeat']} timed calls per case, backends interleaved; threads {s['threads'] if s['threads'] is not None else 'library default'}")
    out.print(f"command: {escape(d['command'])}")
    for b in d["backends"]:
        if b["status"] == "ok":
            out.print(f"  [green]{b['name']}[/] on {b['device']}, {_threads(b, d['machine'])}")
        else:
            out.print(f"  [yellow]{b['name']} skipped[/]: {escape(b['reason'])}")

    ref = d["reference"]
    ran = sorted({n for g in d["graphs"] for n in g["backends"]})
    several = len(ran) > 1
    decode_s = d["decode"]["median_s"]
    title = "graph latency per call (ms)" + (f"; speedup = {ref} median / backend median" if several else "")
    table = Table(title=title, show_edge=True)
    columns = [("graph", "left"), ("batch", "right"), ("backend", "left"), ("median", "right"), ("p90", "right"), ("IQR", "right"), ("graph videos/s", "right"), ("end-to-end videos/s", "right")]
    if several:
        columns.append(("speedup", "right"))
    for col, just in columns:
        table.add_column(col, justify=just, no_wrap=True)
    for g in d["graphs"] + d.get("whole_model", []):
        for name, t in g["backends"].items():
            tput = t["throughput_per_s"]
            # end to end: each video also decodes once (decode + preprocess, measured separately, serially)
            e2e = g["batch"] / (decode_s * g["batch"] + t["median_s"]) if g["role"] == "main" and isinstance(t["median_s"], float) else None
            row = [g["role"], str(g["batch"]), name, _ms(t["median_s"]), _ms(t["p90_s"]), _ms(t["iqr_s"]), _rate(tput), _rate(e2e)]
            if several:
                row.append(_x(g["speedup"][name]))
            table.add_row(*row)
    out.print(table)
    out.print("  graph videos/s: the graph alone; end-to-end: with each video's decode + preprocess (the median above) before it, as 'videploy predict' runs")
    if d.get("whole_model"):
        out.print("  whole model: AdaFocusV3's glance, policy and every local step through the runtime's chain, every exit forced (what a video costs)")
    others = sorted({n for g in d["graphs"] for n in g["backends"] if n != ref})
    for name in others:
        pairs = ", ".join(f"'{g['role']}' batch {g['batch']}: {_x(g['speedup'][name])}" for g in d["graphs"] + d.get("whole_model", []) if name in g["backends"])
        out.print(f"[bold]{name}[/] is these times the speed of [bold]{ref}[/] (reference): {pairs}")

    dec = d["decode"]
    out.print(f"decode + preprocess ({dec['frames']} frames of {dec['source']}): median {_ms(dec['median_s'])} ms, p90 {_ms(dec['p90_s'])} ms per video")
    smallest = min((g["batch"] for g in d["graphs"]), default=None)
    for w in d["where_time_goes"]:
        if d["adaptive"] is None and w["batch"] != smallest:
            continue  # per-video cost is clearest at the smallest batch; --json has them all
        out.print(f"  where time goes, {w['backend']} ({w['what']}): decode {_ms(w['decode_s_per_video'])} ms + run {_ms(w['run_s_per_video'])} ms per video -> decoding is {w['decode_fraction']:.0%}")

    if d.get("end_to_end"):
        _end_to_end(out, d["end_to_end"])

    a = d["adaptive"]
    if a is not None:
        th = a["thresholds"]
        eta = ", ".join(str(v) if isinstance(v, str) else f"{v:.3f}" for v in th["values"])
        extra = f" (budget {th['budget_gflops']:g} GFLOPs)" if th["budget_gflops"] is not None else ""
        if th["expected_gflops"] is not None:
            extra += f", expected {th['expected_gflops']:.4g} GFLOPs/video"
        out.print(f"\nAdaFocusV3 on {a['backend']}, {a['videos']} clips, batch {a['batch_size']}; thresholds ({th['source']}){extra}: {eta}")
        _comparison(out, "early exit vs all steps", a["early_exit"], a["batch_size"])
        e = a["early_exit"]
        out.print(f"early exit spends {_x(e['gflops_ratio'])} the GFLOPs and {_x(e['time_ratio'])} the time of all steps ({_x(e['speedup'])} the speed)")
        for name, r in e["cases"].items():
            model_s = r["median_s"] / a["videos"]
            out.print(f"  {name}: {1 / model_s:.1f} videos/s model only, {1 / (model_s + decode_s):.1f} videos/s end to end (decode {_ms(decode_s)} ms/video first)")
        _comparison(out, "static vs continuous batching", a["batching"], a["batch_size"])
        bt = a["batching"]
        same = "identical results" if bt.get("identical_results") else "[red]results differ[/]"
        out.print(f"continuous batching runs at {_x(bt['speedup'])} the throughput of static batching; {same}")
    for n in d["notes"]:
        out.print(f"[yellow]note:[/] {escape(n)}")


def _comparison(out: Any, title: str, c: dict, batch: int) -> None:
    from rich.table import Table

    table = Table(title=f"{title}, batch {batch}", show_edge=True)
    for col, head in (("case", "case"), ("gflops", "GFLOPs/vid"), ("calls", "local calls"), ("rows", "rows/call"), ("median", "ms"), ("p90", "p90 ms"), ("tput", "vid/s")):
        table.add_column(head, justify="left" if col == "case" else "right")
    for name, r in c["cases"].items():
        table.add_row(
            name,
            f"{r['gflops_per_video']:.4g}",
            str(r["calls"].get("local", 0)),
            f"{r['local_rows_per_call']:.2f} {r['local_occupancy']:.0%}",
            _ms(r["median_s"]),
            _ms(r["p90_s"]),
            "-" if r["throughput_per_s"] is None else f"{r['throughput_per_s']:.1f}",
        )
    out.print(table)
    exits = "; ".join(f"{name} {'/'.join(map(str, r['exit_counts']))}" for name, r in c["cases"].items())
    out.print(f"  videos per exit (glance first): {exits}")
    out.print("  ms: wall time for the whole stream; rows/call: local-encoder rows per call and batch occupancy; IQR in --json")


def _end_to_end(out: Any, e: dict) -> None:
    from rich.table import Table

    table = Table(title=f"end to end on {e['backend']}: {e['videos']} files, batch {e['batch_size']}, {e['decode_workers']} decode worker(s)", show_edge=True)
    for head in ("case", "s (whole stream)", "p90 s", "vid/s", "GFLOPs/vid", "vs slower stage"):
        table.add_column(head, justify="left" if head == "case" else "right")
    for name, c in e["cases"].items():
        eff = c.get("efficiency")
        g = c.get("gflops_per_video")
        table.add_row(name, f"{c['median_s']:.3f}", f"{c['p90_s']:.3f}", _rate(c["videos_per_s"]), "" if g is None else f"{g:.4g}", "" if eff is None else f"{eff:.0%}")
    out.print(table)
    out.print("  vs slower stage: end-to-end throughput / the throughput of the slower of its decode and model cases (100%: the other stage is hidden)")
    for kind in ("lazy", "eager"):
        r = e.get(f"realised_{kind}")
        if r is not None:
            how = "focus frames prepared only when reached" if kind == "lazy" else "every sampled frame prepared up front"
            out.print(f"  early exit realised {_pct(r)} of the time its GFLOPs say it can save, end to end ({how})")


def _pct(x: Any) -> str:
    return f"{x:.0%}" if isinstance(x, (int, float)) and math.isfinite(x) else str(x)
