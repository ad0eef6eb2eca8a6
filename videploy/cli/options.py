"""Command-line arguments that several commands share, defined once."""

from __future__ import annotations

import argparse
import math
from typing import Any, Sequence

# Options whose value may start with '-' (e.g. "--thresholds -inf,0.5"): argparse would read such a
# value as another option, so main() joins them as "--thresholds=-inf,0.5" before parsing.
DASH_VALUE_OPTIONS = ("--thresholds",)


def add_exit_threshold_arguments(parser: argparse.ArgumentParser, fitted_on: str) -> None:
    """``--thresholds`` / ``--budget`` (mutually exclusive) for AdaFocusV3 bundles."""
    exits = parser.add_mutually_exclusive_group()
    exits.add_argument("--thresholds", metavar="T0,T1,...", help="AdaFocusV3 exit thresholds eta_0..eta_T, one per exit, glance first (numbers, inf or -inf; e.g. -inf,0.5,0.8)")
    exits.add_argument("--budget", type=float, metavar="GFLOPS", help=f"AdaFocusV3: fit thresholds to this average GFLOPs per video (Eq. 7) on {fitted_on}")


def parse_thresholds(text: str | None) -> list[float] | None:
    """``"0.5,1.2,inf"`` -> ``[0.5, 1.2, inf]``; None stays None."""
    from videploy.errors import VideployError

    if text is None:
        return None
    out = []
    for part in text.split(","):
        s = part.strip().lower()
        try:
            v = float(s)  # accepts inf, -inf, +inf
        except ValueError:
            raise VideployError(f"--thresholds {text!r}: {part.strip()!r} is not a number (use e.g. 0.5,1.2,inf)") from None
        if math.isnan(v):
            raise VideployError(f"--thresholds {text!r}: nan is not a threshold")
        out.append(v)
    return out


def prediction_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options that make a prediction what it is, from the flags ``predict`` and ``predict-dataset``
    share (so a row of the one equals the answer of the other)."""
    thresholds = parse_thresholds(args.thresholds)
    return {
        "backend": args.backend,
        "device": args.device,
        "precision": args.precision,
        "labels": args.labels,
        "top_k": args.top_k,
        "views": args.views,
        "thresholds": None if thresholds is None else tuple(thresholds),
        "batch_size": args.batch_size,
        "continuous": args.continuous,
        "threads": args.threads,
    }


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """``["--thresholds", "-inf,1"]`` -> ``["--thresholds=-inf,1"]`` (see DASH_VALUE_OPTIONS)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in DASH_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def verbose_parent() -> argparse.ArgumentParser:
    """A parent parser giving a subcommand its own ``-v`` (so it works after the subcommand too)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress details and show tracebacks")
    return p


def stdout_console(**kwargs: object) -> "Console":  # noqa: F821 - rich is imported lazily
    """The console for results. On a terminal, rich fits tables to its width; piped or redirected,
    rich would assume 80 columns and cut numbers and names ('5.59e…'), so it gets room instead:
    tables take the width their content needs and long lines are never wrapped or truncated."""
    import sys

    from rich.console import Console

    if sys.stdout.isatty():
        return Console(highlight=False, **kwargs)  # type: ignore[arg-type]
    return Console(highlight=False, width=100_000, soft_wrap=True, **kwargs)  # type: ignore[arg-type]
