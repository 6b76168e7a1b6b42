"""Typed overrides of frozen config dataclasses.

A typo in ``create_model('unet-original', activaton='gelu')`` must fail *here*, naming the key and
the keys that exist, instead of deep inside a module's ``__init__`` (timm's ``**kwargs`` weakness).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from variants.errors import UserError

C = TypeVar("C")


class ConfigError(UserError):
    """A config key or value that is not allowed; the message says what would be, and ``key``
    names the setting (so a suite file error can point at its line)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def near_matches(word: str, choices: typing.Iterable[str], n: int = 3) -> list[str]:
    """The closest spellings of ``word`` among ``choices`` (best first)."""
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)


def describe_type(tp: Any) -> str:
    """A short human description of an annotation, e.g. ``one of 'relu', 'gelu'``."""
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        inner = describe_type(args[0]) if args else "values"
        return f"a tuple of {inner}"
    if origin is dict:
        key, value = get_args(tp) or (Any, Any)
        return f"a table of {describe_type(key)} = {describe_type(value)}"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` as an instance of annotation ``tp`` or raise ``TypeError``."""
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise TypeError
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        args = get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(_coerce(v, item_tp) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        key_tp, value_tp = get_args(tp) or (Any, Any)
        return {_coerce(k, key_tp): _coerce(v, value_tp) for k, v in value.items()}
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if isinstance(value, tp):
        return value
    raise TypeError


def _choice_hint(value: Any, tp: Any) -> str:
    """' Did you mean ...?' for a misspelt choice of a Literal, else ''."""
    choices = [a for a in get_args(tp) if isinstance(a, str)] if get_origin(tp) is Literal else []
    close = near_matches(value, choices) if isinstance(value, str) else []
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def apply_overrides(config: C, overrides: dict[str, Any], *, owner: str) -> C:
    """Return a copy of the frozen dataclass ``config`` with type-checked ``overrides``.

    ``owner`` names what is being configured (a variant name) for the error message.
    """
    if not overrides:
        return config
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config) if f.init}  # type: ignore[arg-type]
    checked: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in fields:
            close = near_matches(key, fields)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"{owner}: unknown override {key!r}.{hint} Valid keys: {', '.join(sorted(fields))}.", key=key
            )
        try:
            checked[key] = _coerce(value, hints[key])
        except TypeError:
            raise ConfigError(
                f"{owner}: override {key}={value!r} is not valid; expected {describe_type(hints[key])}."
                + _choice_hint(value, hints[key]),
                key=key,
            ) from None
    new = dataclasses.replace(config, **checked)  # type: ignore[type-var]
    return new
