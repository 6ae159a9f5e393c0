"""``deepexposure methods``: list the retouching methods."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("methods", help="list retouching methods", description=__doc__)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..methods import __doc__ as doc, available_methods

    print("\n".join(available_methods()))
    lines = (doc or "").splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("====")]
    table = [line for line in lines[rules[0] + 1:rules[-1]] if line.startswith("``")] if len(rules) >= 2 else []
    if table:
        print()
        print("\n".join(line.replace("``", "") for line in table))
    return 0
