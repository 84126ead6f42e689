"""Command-line flags from an example's ``@dataclass Args``, each field's docstring as its help."""

import argparse
import ast
import dataclasses
import inspect
import itertools
from typing import Any, TypeVar

T = TypeVar("T")


def parse_args(cls: type[T], description: str, argv: list[str] | None = None) -> T:
    """``--flag value`` for every field of ``cls`` (``--flag/--no-flag`` for bools, several values for lists)."""
    body = ast.parse(inspect.getsource(cls)).body[0].body
    helps = {a.target.id: d.value.value for a, d in itertools.pairwise(body) if isinstance(a, ast.AnnAssign) and isinstance(d, ast.Expr)}
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):
        default: Any = f.default_factory() if f.default is dataclasses.MISSING else f.default
        flag, help_ = "--" + f.name.replace("_", "-"), helps.get(f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif isinstance(default, list):
            parser.add_argument(flag, nargs="+", default=default, help=help_)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_)
    return cls(**vars(parser.parse_args(argv)))
