"""Options and helpers shared by several subcommands (method choice, error printing)."""

from __future__ import annotations

import argparse
import sys


def float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_method_options(p: argparse.ArgumentParser, default: str = "deepexposure") -> None:
    g = p.add_argument_group("method")
    g.add_argument("--method", default=default, help=f"retouching method (default: {default}; see `deepexposure methods`)")
    g.add_argument("--model", default=None, help="model directory or training run for learned methods (default: the shipped model)")
    g.add_argument("--ev", type=float_list, default=None, metavar="E1,E2,..", help="exposure bracket for --method fusion, e.g. -1,0,1,2")
    g.add_argument("--exposures", type=float_list, default=None, metavar="E1,..,ET", help="explicit exposure per segment (implies --method exposures)")
    g.add_argument("--segments", type=int, default=None, metavar="T", help="number of segments for learned methods (default: the model's)")
    g.add_argument("--render", choices=["fused", "local", "local+fusion"], default="fused",
                   help="renderer of per-region exposures (deepexposure, exposures): fused = the paper's fused bracket; "
                   "local = each region's exposure through its edge-aware mask; local+fusion = that, fused with the original (docs/local.md)")


class UsageError(ValueError):
    """A bad option value; :func:`deepexposure.cli.main` prints it as one line and exits with 2."""


def method_from_args(args: argparse.Namespace):
    """Build the :class:`~deepexposure.methods.Method` the options ask for (:class:`UsageError` if it cannot)."""
    try:
        return _method_from_args(args)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None


def _method_from_args(args: argparse.Namespace):
    from ..methods import get_method

    name = "exposures" if args.exposures is not None else args.method
    opts: dict = {}
    if name == "exposures":
        opts["evs"] = args.exposures or []
    render = getattr(args, "render", "fused")
    if render != "fused":
        if name not in ("deepexposure", "exposures"):
            raise ValueError(f"--render {render} needs a method that chooses one exposure per region (deepexposure, exposures), not {name!r}")
        opts["render"] = render
    if name == "fusion" and args.ev is not None:
        opts["ev"] = args.ev
    if name in ("deepexposure", "exposure"):
        if args.model:
            opts["model"] = args.model
        if args.segments and name == "deepexposure":
            opts["n_segments"] = args.segments
    return get_method(name, **opts)


def error(msg: str) -> None:
    """Print one line to stderr, prefixed ``error:``; never a traceback."""
    print(f"error: {' '.join(str(msg).split())}", file=sys.stderr)


def warn(msg: str) -> None:
    """Print one line to stderr, prefixed ``warning:``."""
    print(f"warning: {' '.join(str(msg).split())}", file=sys.stderr)
