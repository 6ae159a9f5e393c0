"""Options and helpers shared by several subcommands (method choice, error printing)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pipeline import Progress


def float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_method_options(p: argparse.ArgumentParser, default: str = "deepexposure") -> None:
    p.set_defaults(method_default=default)
    g = p.add_argument_group("method")
    g.add_argument("--method", default=None, help=f"retouching method (default: {default}; see `deepexposure methods`)")
    g.add_argument("--model", default=None, help="model directory or training run for learned methods (default: the shipped model)")
    g.add_argument("--ev", type=float_list, default=None, metavar="E1,E2,..", help="exposure bracket for --method fusion, e.g. -1,0,1,2 (ignored by other methods)")
    g.add_argument("--exposures", type=float_list, default=None, metavar="E1,..,ET", help="your own bracket: exposures fused over the whole frame, one listed per segment (implies --method exposures)")
    g.add_argument("--segments", type=int, default=None, metavar="T", help="number of segments for learned methods (default: the model's)")
    g.add_argument("--render", choices=["fused", "local", "local+fusion"], default="fused",
                   help="renderer of per-region exposures (deepexposure, exposures): fused = the paper's fused bracket; "
                   "local = each region's exposure through its edge-aware mask; local+fusion = that, fused with the original (docs/local.md)")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--jobs``, ``--engine``, ``--address``, ``--retries``: where the items of a batch run (:mod:`deepexposure.batch`)."""
    g = p.add_argument_group("parallel")
    g.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="photos (eval: pairs) processed at a time in worker processes (default 1: in this process; 0: one per core); "
                   "with --engine ray and no --address: the CPUs of the local Ray cluster (default: all cores)")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this machine (default); ray: a Ray cluster, every file readable and writable by every node (needs the ray extra)")
    g.add_argument("--address", default=None, metavar="ADDR", help="with --engine ray: the cluster to join (default: start a local one)")
    g.add_argument("--retries", type=int, default=2, metavar="N",
                   help="times a photo (pair) whose worker process or Ray node died is submitted again (default 2)")


def engine_from_args(args: argparse.Namespace):
    """The :class:`~deepexposure.batch.Engine` the options ask for (:class:`UsageError` if they cannot be met)."""
    from ..batch import Engine, ray_available

    if args.engine != "ray" and args.address:
        raise UsageError("--address needs --engine ray")
    if args.engine == "ray" and not ray_available():
        raise UsageError("--engine ray needs Ray: pip install 'deepexposure[ray]'")
    if args.engine == "ray" and args.address and args.jobs is not None:
        warn("--jobs is ignored with --address: the cluster's CPUs are used")
    jobs = args.jobs if args.jobs is not None else (0 if args.engine == "ray" else 1)
    try:
        return Engine(args.engine, jobs, args.address, args.retries)
    except ValueError as e:
        raise UsageError(f"--{str(e)}") from None


class UsageError(ValueError):
    """A bad option value; :func:`deepexposure.cli.main` prints it as one line and exits with 2."""


def method_from_args(args: argparse.Namespace):
    """Build the :class:`~deepexposure.methods.Method` the options ask for (:class:`UsageError` if it cannot)."""
    try:
        return _method_from_args(args)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None


def _method_from_args(args: argparse.Namespace):
    """Resolve the options to a method; bad values raise, options that will be ignored are warned about.

    ``--ev`` and ``--exposures`` go through :func:`deepexposure.recipe.validate_evs`, the check ``apply``
    runs on recipes, so ``retouch`` never writes a recipe that ``apply`` refuses.
    """
    from ..methods import get_method
    from ..recipe import LIMITS, RecipeError, validate_evs

    explicit = args.method
    name = "exposures" if args.exposures is not None else (explicit or getattr(args, "method_default", "deepexposure"))
    if args.exposures is not None and explicit and explicit != "exposures":
        warn(f"--exposures overrides --method {explicit}: the given exposures are fused instead")
    if args.ev is not None and name != "fusion":
        warn(f"--ev is ignored: it sets the bracket of --method fusion, not of {name}")
    if args.segments is not None:
        if not 1 <= args.segments <= LIMITS["max_evs"]:
            raise UsageError(f"--segments must be in 1..{LIMITS['max_evs']}, got {args.segments}")
        if name != "deepexposure":
            warn(f"--segments is ignored by --method {name} (only the deepexposure policy takes it)")
    opts: dict = {}
    try:
        if name == "exposures":
            opts["evs"] = validate_evs(args.exposures or [], "--exposures")
        if name == "fusion" and args.ev is not None:
            opts["ev"] = validate_evs(args.ev, "--ev")
            if not opts["ev"]:
                raise UsageError("--ev needs at least one exposure value")
    except RecipeError as e:
        raise UsageError(str(e).replace("'evs' must be", "must be")) from None
    render = getattr(args, "render", "fused")
    if render != "fused":
        if name not in ("deepexposure", "exposures"):
            raise ValueError(f"--render {render} needs a method that chooses one exposure per region (deepexposure, exposures), not {name!r}")
        opts["render"] = render
    if name in ("deepexposure", "exposure", "pixelrl"):
        if args.model:
            opts["model"] = args.model
        if args.segments and name == "deepexposure":
            opts["n_segments"] = args.segments
    return get_method(name, **opts)


def _write(line: str, file) -> None:
    """One line through ``tqdm.write`` so that an active progress bar is redrawn below it, not broken."""
    from tqdm import tqdm

    tqdm.write(line, file=file)


def error(msg: object) -> None:
    """Print one line to stderr, prefixed ``error:``; never a traceback."""
    _write(f"error: {' '.join(str(msg).split())}", sys.stderr)


def warn(msg: object) -> None:
    """Print one line to stderr, prefixed ``warning:``."""
    _write(f"warning: {' '.join(str(msg).split())}", sys.stderr)


def say(msg: str) -> None:
    """Print one line to stdout (a per-file progress line) without breaking a progress bar."""
    _write(str(msg), sys.stdout)


@contextlib.contextmanager
def photo_progress(name: str, quiet: bool) -> Iterator[Progress | None]:
    """One photo's stages on a terminal: a tqdm line on stderr, ``<name>: render 5/10``, removed when
    the photo is done (below the batch's bar when there is one).

    Yields the :data:`~deepexposure.pipeline.Progress` callback to hand to
    :func:`~deepexposure.pipeline.retouch_file`, or None (nothing shown, nothing called) with
    ``--quiet`` or when stderr is not a terminal.
    """
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=1, desc=name, leave=False, file=sys.stderr, unit="step", dynamic_ncols=True)
    shown = ""

    def update(stage: str, done: int, total: int) -> None:
        nonlocal shown
        if stage != shown:  # a new stage is drawn at once; steps within a stage at tqdm's rate
            shown = stage
            bar.set_description_str(f"{name}: {stage}", refresh=False)
            bar.reset(total=max(total, 1))  # redraws
            if done:
                bar.update(done)
        else:
            bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
