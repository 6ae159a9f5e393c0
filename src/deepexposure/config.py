"""Dataclass configs as command-line options: each field's docstring becomes its ``--help``.

cleanrl style: one ``@dataclass`` per entry point, a one-line string literal under each field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
from functools import lru_cache
from typing import Any

__all__ = ["field_docs", "add_dataclass_options", "dataclass_from_args"]


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Map field name -> the string literal that follows it in the class body."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name):
            if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
                docs[a.target.id] = " ".join(b.value.value.split())
    return docs


def _scalar_type(default: Any):
    if isinstance(default, bool):
        return None
    if isinstance(default, (int, float, str)):
        return type(default)
    return None


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, title: str, skip: tuple[str, ...] = ()) -> None:
    """Add ``--field-name`` for every scalar field of ``cls`` (bools as ``--flag/--no-flag``); defaults stay None so only given options override."""
    group = parser.add_argument_group(title)
    docs = field_docs(cls)
    taken = {a.dest for a in parser._actions}
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        if f"cfg_{f.name}" in taken:  # one option serves every config that has the field
            action = next(a for a in parser._actions if a.dest == f"cfg_{f.name}")
            first = getattr(action, "_cfg_title", "")
            if first:
                action.help = f"{first}: {action.help}"
                action._cfg_title = ""
            action.help = f"{action.help}; {title}: {docs.get(f.name, '')} (default: {f.default})"
            continue
        opt = "--" + f.name.replace("_", "-")
        help_ = f"{docs.get(f.name, '')} (default: {f.default})"
        if isinstance(f.default, bool):
            action = group.add_argument(opt, dest=f"cfg_{f.name}", action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif _scalar_type(f.default):
            action = group.add_argument(opt, dest=f"cfg_{f.name}", type=_scalar_type(f.default), default=None, help=help_)
        else:
            continue
        action._cfg_title = title


def dataclass_from_args(cls: type, args: argparse.Namespace, base: dict | None = None):
    """Build ``cls`` from ``base`` (e.g. a saved config) overridden by the options the user gave.

    If ``cls`` has a classmethod ``upgrade_saved(dict) -> dict``, ``base`` goes through it first, so
    a config saved before a field existed keeps the meaning it had (e.g. DeepExposure's
    ``policy_gradient``).
    """
    values = dict(base or {})
    if hasattr(cls, "upgrade_saved"):
        values = cls.upgrade_saved(values)
    for f in dataclasses.fields(cls):
        v = getattr(args, f"cfg_{f.name}", None)
        if v is not None:
            values[f.name] = v
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})
