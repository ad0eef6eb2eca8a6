"""The benchmark record on disk (``videploy bench --out DIR``): JSON with every sample, Markdown, plots.

* ``report.json`` -- the whole report (every timing sample, the machine, library versions, thread
  settings, the exact command), strict JSON;
* ``report.md`` -- the tables a person reads: latency statistics (mean, median, p90/p95/p99,
  min/max), throughput in videos/s and views/s, achieved GFLOP/s and their fraction of this
  machine's measured matrix-multiply peak, cold start and peak memory per backend, decode vs
  model, and for AdaFocusV3 the per-stage breakdown and the exit-budget sweep;
* ``latency_vs_batch.png`` -- median latency per call against batch size, one line per backend
  and graph; ``adafocus_budget.png`` -- GFLOPs and time per video against the exit budget.

Written into a staging directory and renamed into place, so a failed run leaves no half record.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from videploy import jsonsafe
from videploy.errors import VideployError
from videploy.optional import require


def write_record(report: Any, out: str | Path) -> dict[str, Path]:
    """Write ``report`` (a :class:`~videploy.bench.bundle.BenchReport`) into directory ``out``; the paths by kind."""
    out = Path(out)
    d = report.to_dict()
    plt = _pyplot()  # before writing anything: a missing matplotlib leaves no partial record
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise VideployError(f"cannot write the benchmark record to {str(out)!r}: {exc.strerror or exc}") from None
    try:
        (stage / "report.json").write_text(jsonsafe.dumps(d, indent=2) + "\n", encoding="utf-8")
        (stage / "report.md").write_text(markdown(d), encoding="utf-8")
        _plot_latency(plt, d, stage / "latency_vs_batch.png")
        if d["adaptive"] is not None and d["adaptive"].get("budget_sweep"):
            _plot_budget(plt, d, stage / "adafocus_budget.png")
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return {p.name: p for p in sorted(out.iterdir())}


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "the benchmark plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _f(x: Any, spec: str = ".3g") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else str(x if x is not None else "-")


def _ms(x: Any) -> str:
    return f"{x * 1e3:.2f}" if isinstance(x, (int, float)) else "-"


def markdown(d: dict[str, Any]) -> str:
    """The record as Markdown tables."""
    m = d["machine"]
    lines = [
        f"# videploy bench: {d['model']} ({d['family']}, {d['precision']})",
        "",
        f"- machine: {m.get('cpu_model') or m['processor']}, {m['usable_cpus']}/{m['cpu_count']} CPUs usable, load {m.get('load_average_1_5_15min')}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
        f"- command: `{d['command']}`",
        f"- settings: {d['settings']['warmup']} warm-up + {d['settings']['repeat']} timed calls per case, backends interleaved, threads {d['settings']['threads']}",
    ]
    if d.get("matmul_peak"):
        p = d["matmul_peak"]
        lines.append(f"- matrix-multiply peak measured in this run: {p['gflops_per_s']:.1f} GFLOP/s ({p['probe']}, threads {p['threads']})")
    if d["random_weights"]:
        lines.append("- random weights: speed does not depend on them, except where AdaFocusV3 videos exit")
    lines += ["", "## Backends", "", "| backend | device | threads | cold start (s) | peak RSS while loading (MiB) | status |", "|---|---|---|---|---|---|"]
    for b in d["backends"]:
        if b["status"] == "ok":
            lines.append(f"| {b['name']} | {b['device']} | {_f(b.get('threads'))} | {_f(b.get('load_s'))} | {_f(b.get('load_peak_rss_mb'), '.0f')} | ok |")
        else:
            lines.append(f"| {b['name']} | {b['device']} | | | | skipped: {b['reason']} |")
    lines += [
        "",
        f"## Graph latency per call (ms); peak RSS while timing: {_f(d.get('timing_peak_rss_mb'), '.0f')} MiB",
        "",
        "| graph | batch | backend | mean | median | p90 | p95 | p99 | min | max | views/s | videos/s | GFLOP/s | % of peak | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in d["graphs"] + d.get("whole_model", []):
        for name, t in g["backends"].items():
            frac = t.get("fraction_of_matmul_peak")
            lines.append(
                f"| {g['role']} | {g['batch']} | {name} | {_ms(t['mean_s'])} | {_ms(t['median_s'])} | {_ms(t['p90_s'])} | {_ms(t['p95_s'])} | {_ms(t['p99_s'])} | "
                f"{_ms(t['min_s'])} | {_ms(t['max_s'])} | {_f(t.get('views_per_s'), '.1f')} | {_f(t.get('videos_per_s'), '.1f')} | "
                f"{_f(t.get('achieved_gflops_per_s'), '.1f')} | {'-' if frac is None else f'{frac:.0%}'} | {_f(g['speedup'][name], '.2f')} |"
            )
    dec = d["decode"]
    lines += ["", "## Decode + preprocess vs model (per video)", "", f"decode + preprocess ({dec['frames']} frames): median {_ms(dec['median_s'])} ms, p90 {_ms(dec['p90_s'])} ms", ""]
    lines += ["| backend | what | decode (ms) | model (ms) | decode share |", "|---|---|---|---|---|"]
    for w in d["where_time_goes"]:
        lines.append(f"| {w['backend']} | {w['what']} | {_ms(w['decode_s_per_video'])} | {_ms(w['run_s_per_video'])} | {w['decode_fraction']:.0%} |")
    e = d.get("end_to_end")
    if e:
        lines += ["", f"## End to end on {e['backend']}: {e['videos']} files, batch {e['batch_size']}, {e['decode_workers']} decode worker(s)", ""]
        lines += ["| case | median (s, whole stream) | p90 (s) | videos/s | GFLOPs/video | vs slower stage |", "|---|---|---|---|---|---|"]
        for name, c in e["cases"].items():
            eff = c.get("efficiency")
            lines.append(
                f"| {name} | {c['median_s']:.3f} | {c['p90_s']:.3f} | {_f(c['videos_per_s'], '.2f')} | {_f(c.get('gflops_per_video'), '.4g')} | "
                f"{'' if eff is None else _f(eff * 100, '.0f') + '%'} |"
            )
        for kind in ("lazy", "eager"):
            r = e.get(f"realised_{kind}")
            if isinstance(r, float):
                lines.append(f"\nearly exit realised {r:.0%} of its GFLOPs-predicted time saving end to end ({kind} focus frames)")
    a = d["adaptive"]
    if a is not None:
        lines += ["", f"## AdaFocusV3 on {a['backend']}: {a['videos']} clips, batch {a['batch_size']}", ""]
        for title, key in (("early exit vs all steps", "early_exit"), ("static vs continuous batching", "batching")):
            c = a[key]
            lines += [f"### {title}", "", "| case | GFLOPs/video | median (ms, whole stream) | videos/s | local calls | rows/call | stages (ms) |", "|---|---|---|---|---|---|---|"]
            for name, r in c["cases"].items():
                stages = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in r.get("stages_s", {}).items())
                lines.append(
                    f"| {name} | {r['gflops_per_video']:.4g} | {_ms(r['median_s'])} | {_f(r['throughput_per_s'], '.1f')} | {r['calls'].get('local', 0)} | "
                    f"{r['local_rows_per_call']:.2f} | {stages} |"
                )
            lines += ["", f"speedup {_f(c['speedup'], '.2f')}x, GFLOPs ratio {_f(c['gflops_ratio'], '.2f')}", ""]
        if a.get("budget_sweep"):
            lines += ["### exit budget sweep", "", "| budget (GFLOPs) | GFLOPs/video | time/video (ms) | videos per exit |", "|---|---|---|---|"]
            for r in a["budget_sweep"]:
                lines.append(f"| {r['budget_gflops']:.4g} | {r['gflops_per_video']:.4g} | {_ms(r['time_per_video_s'])} | {'/'.join(map(str, r['exit_counts']))} |")
    if d["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in d["notes"]]
    return "\n".join(lines) + "\n"


def _plot_latency(plt: Any, d: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for g in d["graphs"]:
        for name, t in g["backends"].items():
            series.setdefault((g["role"], name), []).append((g["batch"], t["median_s"] * 1e3))
    for (role, name), pts in sorted(series.items()):
        pts.sort()
        ax.plot([b for b, _ in pts], [ms for _, ms in pts], marker="o", label=f"{role} on {name}")
    ax.set_xlabel("batch size")
    ax.set_ylabel("median latency per call (ms)")
    ax.set_title(f"{d['model']}: latency vs batch")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_budget(plt: Any, d: dict[str, Any], path: Path) -> None:
    sweep = sorted(d["adaptive"]["budget_sweep"], key=lambda r: r["budget_gflops"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    budgets = [r["budget_gflops"] for r in sweep]
    ax.plot(budgets, [r["gflops_per_video"] for r in sweep], marker="o", label="GFLOPs per video (spent)")
    ax.set_xlabel("exit budget (GFLOPs per video)")
    ax.set_ylabel("GFLOPs per video")
    ax2 = ax.twinx()
    ax2.plot(budgets, [r["time_per_video_s"] * 1e3 for r in sweep], marker="s", color="tab:red", label="time per video (ms)")
    ax2.set_ylabel("model time per video (ms)")
    ax.set_title(f"{d['model']}: AdaFocusV3 early exit, cost vs budget")
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
