"""The configuration reference (docs/configuration.md), generated from the config classes themselves, so
it cannot drift: a test regenerates it and fails when the committed file differs.

    python -m recsys_spark.config_reference > docs/configuration.md
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from recsys_spark.config import Config
from recsys_spark.core.registry import RECIPES
from recsys_spark.core.settings import RecipeSettings

HEADER = """# Configuration reference

Generated from the config classes by `python -m recsys_spark.config_reference > docs/configuration.md`
(a test fails when this file and the classes disagree). Every key, its type and its default; `[]` marks a
list of entries. Unknown keys are errors that list the allowed ones. Relative local paths resolve against
the config file's folder; `${VAR}` is replaced by an environment variable.
"""


def _type_name(t: Any) -> str:
    origin = get_origin(t)
    if origin is Annotated:
        return _type_name(get_args(t)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(t))
    if origin is Literal:
        return " / ".join(repr(a) for a in get_args(t))
    if origin is list:
        return f"list of {_type_name(get_args(t)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(get_args(t)[0])} to {_type_name(get_args(t)[1])}"
    if t is type(None):
        return "null"
    if t is typing.Any:
        return "any"
    return t.__name__ if isinstance(t, type) else str(t)


def _model(t: Any) -> type[BaseModel] | None:
    while get_origin(t) in (Annotated, Union, types.UnionType, list):
        t = next(a for a in get_args(t) if a is not type(None))
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{value!r}`" if value not in ({}, []) else "empty"


def _doc(cls: type) -> str:
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split())


def _section(cls: type[BaseModel], path: str, out: list[str], seen: dict | None = None) -> None:
    seen = {} if seen is None else seen
    if cls in seen:
        out += [f"## `{path}`", "", f"The same keys as `{seen[cls]}`.", ""]
        return
    seen[cls] = path
    out += [f"## `{path}`" if path else "## top level", "", _doc(cls), "", "| key | type | default |", "|---|---|---|"]
    nested = []
    for name, field in cls.model_fields.items():
        out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} |")
        sub = _model(field.annotation)
        if sub is not None and sub.__module__ in ("recsys_spark.config", "recsys_spark.schema"):
            suffix = "[]" if get_origin(field.annotation) is list else ""
            nested.append((sub, f"{path + '.' if path else ''}{name}{suffix}"))
    out.append("")
    for sub, sub_path in nested:
        _section(sub, sub_path, out, seen)


def reference() -> str:
    out = [HEADER]
    _section(Config, "", out)
    out += ["## Recipe settings (`solutions[].settings`)", "",
            "Each recipe's keys; every recipe also has the common ones.", ""]
    for name, cls in [("common", RecipeSettings)] + [(e.name, e.settings) for e in RECIPES.values()]:
        fields = cls.model_fields if name == "common" else {
            k: f for k, f in cls.model_fields.items() if k not in RecipeSettings.model_fields}
        out += [f"### {name}", "", _doc(cls), "", "| key | type | default |", "|---|---|---|"]
        out += [f"| `{k}` | {_type_name(f.annotation)} | {_default(f)} |" for k, f in fields.items()]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
