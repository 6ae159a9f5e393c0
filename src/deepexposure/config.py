"""Dataclass configs as command-line options: each field's docstring becomes its ``--help``.

cleanrl style: one ``@dataclass`` per entry point, a one-line string literal under each field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import textwrap
import weakref
from functools import cache
from typing import Any

__all__ = ["field_docs", "add_dataclass_options", "dataclass_from_args", "ConfigError", "check_values", "check_config", "MIN_VALUES"]

#: Smallest allowed value of every size, count and period setting, by field name; one table for
#: every config class (:class:`~deepexposure.train.TrainConfig` and the agents' configs), checked by
#: :func:`check_config`. ``steps`` may be 0 (discriminator pre-training only), but not together with
#: ``p_steps`` 0 (TrainConfig checks that).
MIN_VALUES: dict[str, int | float] = {
    "steps": 0,
    "batch_size": 1,
    "p_steps": 0,
    "d_steps": 1,
    "g_steps": 1,
    "disc_batch": 0,
    "fake_pool": 0,
    "disc_base_channels": 1,
    "image_size": 16,
    "log_every": 1,
    "sample_every": 0,
    "ckpt_every": 1,
    "keep_checkpoints": 1,
    "threads": 0,
    "n_segments": 1,
    "base_channels": 1,
    "n_edits": 1,
    "buffer_size": 1,
    "lambda_gp": 0.0,
    "fidelity_weight": 0.0,
    "pretrain_steps": 0,
    "pairs_pool": 1,
    "pairs_refresh": 0,
}


@cache
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


_ROLE = re.compile(r":(?:mod|class|func|meth|data|attr):`~?([^`]+)`")


def plain_text(text: str) -> str:
    """Docstring markup as terminal text for ``--help``: ``:class:`x```, ``` ``x`` ``` -> x."""
    return _ROLE.sub(r"\1", text).replace("``", "")


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def _scalar_type(default: Any):
    if isinstance(default, bool):
        return None
    if isinstance(default, (int, float, str)):
        return type(default)
    return None


@dataclasses.dataclass
class _Option:
    """An option :func:`add_dataclass_options` added: its action, the title of the config that added
    it first, and whether a second config shares it (then every config's help is listed)."""

    action: argparse.Action
    title: str
    shared: bool = False


# parser -> field name -> its option; kept here so nothing is stored in argparse's internals
_OPTIONS: weakref.WeakKeyDictionary[argparse.ArgumentParser, dict[str, _Option]] = weakref.WeakKeyDictionary()


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, title: str, skip: tuple[str, ...] = ()) -> None:
    """Add ``--field-name`` (dest ``cfg_<field>``) for every scalar field of ``cls`` (bools as
    ``--flag/--no-flag``); defaults stay None so only given options override. A field that an
    earlier config already added keeps its one option, whose help then names both configs."""
    group = parser.add_argument_group(title)
    docs = {k: plain_text(v) for k, v in field_docs(cls).items()}
    choices = getattr(cls, "CHOICES", {})
    options = _OPTIONS.setdefault(parser, {})
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        known = options.get(f.name)
        if known is not None:  # one option serves every config that has the field
            if not known.shared:
                known.action.help = f"{known.title}: {known.action.help}"
                known.shared = True
            known.action.help = f"{known.action.help}; {title}: {docs.get(f.name, '')} (default: {f.default})"
            continue
        opt = "--" + f.name.replace("_", "-")
        help_ = f"{docs.get(f.name, '')} (default: {f.default})"
        if isinstance(f.default, bool):
            action = group.add_argument(opt, dest=f"cfg_{f.name}", action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif _scalar_type(f.default):
            typ = _scalar_type(f.default)
            action = group.add_argument(opt, dest=f"cfg_{f.name}", type=typ, default=None, help=help_, choices=choices.get(f.name),
                                        metavar=None if f.name in choices else _METAVARS[typ])
        else:
            continue
        options[f.name] = _Option(action, title)


def dataclass_from_args(cls: type, args: argparse.Namespace, base: dict | None = None):
    """Build ``cls`` from ``base`` (e.g. a saved config) overridden by the options the user gave.

    Raises :class:`ConfigError` if a value is out of its :data:`MIN_VALUES` range.

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
    values = {k: v for k, v in values.items() if k in names}
    check_values(values)  # before the class's own checks, so every size error reads the same
    return cls(**values)


class ConfigError(ValueError):
    """A setting out of range. ``str(e)`` names the field (``batch_size must be >= 1, got 0``);
    :attr:`option_message` names the command-line option (``--batch-size must be >= 1, got 0``)."""

    def __init__(self, field: str, requirement: str, value: Any):
        self.field, self.requirement, self.value = field, requirement, value
        super().__init__(f"{field} must be {requirement}, got {value!r}")

    @property
    def option(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def option_message(self) -> str:
        return f"{self.option} must be {self.requirement}, got {self.value!r}"


def check_values(values: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first value below its :data:`MIN_VALUES` bound.

    Names not in the table, and values that are not numbers, are left to the config class itself.
    """
    for name, v in values.items():
        lo = MIN_VALUES.get(name)
        if lo is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(lo, int) and isinstance(v, float) and not v.is_integer():
            raise ConfigError(name, "a whole number", v)
        if not v >= lo:  # also refuses NaN
            raise ConfigError(name, f">= {lo}", v)


def check_config(cfg: Any) -> None:
    """:func:`check_values` on every field of dataclass ``cfg`` (call it from ``__post_init__``)."""
    check_values({f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
