"""``deepexposure`` command line: subcommands only; each lives in ``deepexposure/commands/<name>.py``."""

from __future__ import annotations

import argparse
import gc
import importlib
import sys

from . import __version__

#: subcommand modules, in ``--help`` order; each has ``register(subparsers)``
COMMANDS = ["retouch", "apply", "demo", "train", "eval", "synth", "prepare", "methods", "serve", "denoise", "restore"]

#: options whose value is a comma list that may start with '-' (``--ev -1,0,1``)
_LIST_OPTIONS = ("--ev", "--exposures")


def _join_list_options(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _LIST_OPTIONS and i + 1 < len(argv):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser, with every subcommand, or with the subcommand ``only`` alone (what
    :func:`main` parses a command with: the other commands' modules, and what they import, such as the
    trainers that ``train`` needs for its options, are not loaded)."""
    parser = argparse.ArgumentParser(
        prog="deepexposure",
        description="Learned local-exposure photo retouching with white-box recipes (DeepExposure).",
    )
    parser.add_argument("--version", action="version", version=f"deepexposure {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        try:
            mod = importlib.import_module(f"deepexposure.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"deepexposure.commands.{name}":
                continue  # command not part of this build
            raise
        mod.register(sub)
    if only is not None and not sub.choices:  # not part of this build: the full parser says what is
        return build_parser()
    from .config import plain_text

    for p in sub.choices.values():  # module docstrings as terminal text
        p.description = plain_text(p.description or "")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = _join_list_options(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .commands._common import UsageError, error

    args.argv = argv  # what was asked, for commands that record it (``train`` writes it to config.json)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        error(e)
        return 2
    except KeyboardInterrupt:
        print("deepexposure: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``deepexposure`` program (console script and ``python -m deepexposure``): :func:`main`, then exit.

    Before exiting, the objects alive are moved to the collector's permanent generation
    (``gc.freeze``), so the interpreter's shutdown does not traverse them again and again (with
    torch imported that took 1 s of every command on the 2-core machine; 0.2 s with this). Exit
    handlers still run; the memory goes back to the system with the process.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
