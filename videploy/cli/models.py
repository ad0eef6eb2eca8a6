"""``videploy models``: the zoo, with parameters, GFLOPs and the input each model takes."""

from __future__ import annotations

import argparse
import inspect
import sys
from dataclasses import asdict, dataclass, field
from typing import Any
from videploy import jsonsafe

DESCRIPTION = """\
List the model zoo: every name 'videploy export' (and videploy.models.create) accepts, with its
family, parameter count, compute per view and the input tensor it takes.

GFLOPs are multiply-accumulates of convolutions, linear layers and attention products for one
view (one clip) at batch 1, the convention of the papers' tables. Video-FocalNet is usually
evaluated on 4 clips x 3 crops = 12 views, STAM on one. AdaFocusV3 is adaptive: its cost depends
on when a video exits, so the column shows the cumulative cost per exit (the glance alone, the
glance + policy + first local step, ..., all steps).

The numbers are counted, not copied from the papers: each model is built on PyTorch's meta
device (shapes without memory or arithmetic) and run once under torch's FLOP counter. Nothing
is downloaded or cached. --no-flops skips the count.

A zoo name is a family plus the official configuration of one published model; any official
constructor keyword can be overridden at export (--set key=value). --families lists the
families and their keywords, for configurations outside the zoo.
"""

EPILOG = """\
examples:
  videploy models                          the zoo as a table
  videploy models stam_16 stam_32          only these
  videploy models --no-flops               fast: no FLOP count
  videploy models --json > zoo.json        machine-readable (parameters, GFLOPs, inputs, exits)
  videploy models --families               also every family and its official keyword arguments
"""


@dataclass(frozen=True)
class ModelInfo:
    """One zoo entry as listed (also the --json record)."""

    name: str
    family: str
    parameters: int
    num_classes: int | None
    inputs: list[dict[str, Any]]  # name, shape (batch 1), dtype
    layout: str | None
    gflops: float | None  # per view, batch 1 (for AdaFocusV3: all exits taken, = exit_gflops[-1])
    exit_gflops: list[float] | None  # AdaFocusV3: cumulative cost at each exit
    description: str
    notes: list[str] = field(default_factory=list)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from videploy.cli.options import verbose_parent

    p = subparsers.add_parser(
        "models",
        help="list the model zoo (parameters, GFLOPs, inputs)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="zoo names to show (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-flops", action="store_true", help="skip the GFLOPs count (faster)")
    p.add_argument("--families", action="store_true", help="also list the families and their official keyword arguments")
    p.set_defaults(func=run)
    return p


# --------------------------------------------------------------------------------------------
# Gathering
# --------------------------------------------------------------------------------------------


def zoo_names() -> list[str]:
    """Zoo names in registration order (the family modules' order), components excluded."""
    from videploy.models.registry import REGISTRY

    return [n for n, e in REGISTRY.items() if not e.is_family and not e.family.component]


def _layout_letters(layout: str | None, ndim: int) -> str | None:
    return ",".join(layout) if layout and len(layout) == ndim else None


def describe_model(name: str, flops: bool = True) -> ModelInfo:
    """Build ``name`` on the meta device and read its size, input and (optionally) GFLOPs."""
    import torch

    from videploy.models import count_gflops, create, get

    entry = get(name)
    notes: list[str] = []
    with torch.device("meta"):  # shapes only: no memory, no arithmetic, no weight initialisation cost
        model = create(name)
        inputs = model.example_inputs(1)
    parameters = sum(p.numel() for p in model.parameters())
    try:
        layout = model.preprocessing().layout
    except NotImplementedError:
        layout = None
    names = list(getattr(model, "input_names", ())) or [f"input{i}" for i in range(len(inputs))]
    specs = [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for n, t in zip(names, inputs)]

    gflops: float | None = None
    exit_gflops: list[float] | None = None
    if flops:
        early_exit = model.early_exit()
        if early_exit is not None:
            exit_gflops = [float(g) for g in early_exit.exit_gflops]
            gflops = exit_gflops[-1]
        else:
            gflops = _count_meta_or_cpu(name, model, inputs, count_gflops, notes)
    try:
        num_classes: int | None = int(model.num_classes)
    except (AttributeError, TypeError, ValueError):
        num_classes = None
    return ModelInfo(
        name=name,
        family=entry.family.name,
        parameters=int(parameters),
        num_classes=num_classes,
        inputs=specs,
        layout=layout,
        gflops=gflops,
        exit_gflops=exit_gflops,
        description=entry.description,
        notes=notes,
    )


def _count_meta_or_cpu(name: str, model: Any, inputs: Any, count_gflops: Any, notes: list[str]) -> float | None:
    """Count on the meta device; a model whose forward needs real values is counted on the CPU."""
    import torch

    from videploy.errors import VideployError
    from videploy.models import create

    try:
        return float(count_gflops(model, inputs))
    except (NotImplementedError, RuntimeError, ValueError, TypeError) as meta_exc:
        try:
            real = create(name)
            with torch.no_grad():
                return float(count_gflops(real, tuple(torch.zeros(t.shape, dtype=t.dtype) for t in inputs)))
        except (RuntimeError, ValueError, TypeError, VideployError) as exc:
            notes.append(f"GFLOPs not counted: {type(exc).__name__}: {exc} (meta device: {meta_exc})")
            return None


def family_kwargs(name: str) -> tuple[dict[str, Any], list[str]]:
    """``(keyword -> default, required keywords)`` of a family's official constructor."""
    import torch

    from videploy.models import create, get

    build = get(name).family.build
    if inspect.isclass(build):  # components register the official class itself
        defaults: dict[str, Any] = {}
        required: list[str] = []
        for p in inspect.signature(build).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.default is p.empty:
                required.append(p.name)
            else:
                defaults[p.name] = p.default
        return defaults, required
    with torch.device("meta"):
        model = create(name)
    return dict(model.official_kwargs()), []


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return getattr(v, "__name__", None) or repr(v)


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------


def format_gflops(info: ModelInfo) -> str:
    """GFLOPs per view; for adaptive models the cumulative cost per exit, one line each."""
    if info.exit_gflops:
        eg = info.exit_gflops
        steps = len(eg) - 1
        lines = [f"glance {eg[0]:.1f}"]
        if steps >= 1:
            lines.append(f"+1 step {eg[1]:.1f}")
        if steps >= 2:
            lines.append(f"… {steps} steps {eg[-1]:.1f}")
        return "\n".join(lines)
    return "-" if info.gflops is None else f"{info.gflops:.1f}"


def format_input(info: ModelInfo) -> str:
    """``video B,8,3,224,224`` with the layout letters below when known."""
    out = []
    for spec in info.inputs:
        shape = ["B", *map(str, spec["shape"][1:])]
        letters = _layout_letters(info.layout, len(shape))
        dtype = "" if spec["dtype"] == "float32" else f" {spec['dtype']}"
        out.append(f"{spec['name']} {','.join(shape)}{dtype}" + (f"\n({letters})" if letters else ""))
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from videploy.cli.options import stdout_console
    from rich.table import Table

    err = Console(stderr=True)
    # importing torch and the model code takes seconds: say so at once, not after
    with err.status("loading PyTorch and the model registry", spinner="dots"):
        import videploy.models  # noqa: F401 - registers the families
        from videploy.models.registry import REGISTRY, families, get

    names = args.names or zoo_names()
    for n in names:
        entry = get(n)  # unknown names: a VideployError with suggestions
        if entry.is_family:
            from videploy.errors import VideployError

            raise VideployError(f"{n!r} is a family, not a zoo model; 'videploy models --families' lists families and their keywords")

    start = time.perf_counter()
    infos: list[ModelInfo] = []
    with err.status("building models on the meta device" + ("" if args.no_flops else " and counting GFLOPs"), spinner="dots") as status:
        for n in names:
            status.update(f"{n}: building" + ("" if args.no_flops else " and counting GFLOPs"))
            infos.append(describe_model(n, flops=not args.no_flops))
    elapsed = time.perf_counter() - start

    fams: list[dict[str, Any]] = []
    if args.families:
        for f in families(include_components=True):
            defaults, required = family_kwargs(f)
            entry = REGISTRY[f]
            fams.append(
                {
                    "name": f,
                    "component": entry.family.component,
                    "description": entry.description,
                    "required": required,
                    "kwargs": _jsonable(defaults),
                    "aliases": sorted(entry.family.aliases),
                    "zoo": [n for n, e in REGISTRY.items() if e.family is entry.family and not e.is_family],
                }
            )

    if args.json:
        doc: dict[str, Any] = {"models": [asdict(i) for i in infos]}
        if args.families:
            doc["families"] = fams
        sys.stdout.write(jsonsafe.dumps(doc, indent=2) + "\n")
        return 0

    out = stdout_console()
    table = Table(title="videploy model zoo", title_justify="left", show_lines=True)
    table.add_column("model (family)\ndescription", ratio=1, min_width=24)
    table.add_column("params\n(M)", justify="right", no_wrap=True)
    table.add_column("GFLOPs\n/ view", justify="right", no_wrap=True)
    table.add_column("input", no_wrap=True)
    for i in infos:
        model = f"[bold cyan]{i.name}[/] [dim]({i.family})[/]\n{i.description}"
        table.add_row(model, f"{i.parameters / 1e6:.1f}", format_gflops(i), format_input(i))
    out.print(table)
    for i in infos:
        for note in i.notes:
            out.print(f"[yellow]{i.name}: {note}[/yellow]")
    if not args.no_flops:
        out.print(f"[dim]GFLOPs: multiply-accumulates per view at batch 1, counted on the meta device ({elapsed:.1f} s).[/dim]")

    if args.families:
        ft = Table(title="families (videploy.models.create(family, **official keywords))", title_justify="left", show_lines=True)
        ft.add_column("family", style="bold cyan", no_wrap=True)
        ft.add_column("official keywords (defaults)")
        ft.add_column("zoo / notes")
        for f in fams:
            kw = ", ".join([*f["required"], *(f"{k}={v!r}" for k, v in f["kwargs"].items())])
            note = ", ".join(f["zoo"]) if f["zoo"] else ("component of AdaFocusV3" if f["component"] else "")
            if f["aliases"]:
                note += ("\n" if note else "") + "aliases: " + ", ".join(f["aliases"])
            ft.add_row(f["name"], kw, note)
        out.print(ft)
    return 0
