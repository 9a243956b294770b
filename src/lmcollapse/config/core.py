"""Typed configuration machinery for frozen dataclass trees: YAML in and out, dotted overrides,
attribute docstrings as help, and one validation pass that reports every problem at once.

A config class is a frozen dataclass whose fields all have defaults and whose types are built from
bool, int, float, str, Literal[...], X | None, tuple[X, ...], tuple[X, Y] and nested config
classes. It may define `check(self) -> list[str]` for rules that types cannot say (ranges,
cross-field constraints); each message starts with the field it is about. Later issues add fields
by adding annotated attributes with a default and a docstring; nothing else has to change.

    cfg = resolve(ExperimentConfig, preset="demo", config="my.yaml", overrides=["paradigm.k=0.5"])
    text = dump_yaml(cfg)             # resolved config; from_yaml(cls, text) == cfg
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import re
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from lmcollapse.errors import ConfigError

T = TypeVar("T")
_INVALID = object()  # a value that could not be coerced; its problem is already recorded


# ----------------------------------------------------------------------------------------------
# Documentation: attribute docstrings (a string literal right after an annotated field).


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field: docstring} from the class source, so help text lives next to the field."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    docs: dict[str, str] = {}
    if not isinstance(body, ast.ClassDef):
        return docs
    for stmt, nxt in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def describe_fields(
    cls: type, prefix: str = "", default: Any = None
) -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, docstring) for every leaf field, depth first."""
    rows: list[tuple[str, str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    default = cls() if default is None else default
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if _is_config_class(tp):
            rows.extend(describe_fields(tp, key + ".", getattr(default, f.name)))
        else:
            rows.append(
                (key, _type_name(tp), to_plain(getattr(default, f.name)), docs.get(f.name, ""))
            )
    return rows


# ----------------------------------------------------------------------------------------------
# Plain data <-> config objects.


def _is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def to_plain(value: Any, *, json_safe: bool = False) -> Any:
    """Config or result object -> YAML/JSON-ready dicts, lists and scalars: dataclasses become
    dicts of their fields (a field whose metadata says `omit_none` is left out while None),
    tuples and arrays lists, numpy scalars Python numbers; with `json_safe`, NaN and ±inf None
    (JSON has no such numbers). The one conversion configs and typed results are written by."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_plain(getattr(value, f.name), json_safe=json_safe)
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit_none") and getattr(value, f.name) is None)
        }
    if isinstance(value, dict):
        return {str(k): to_plain(v, json_safe=json_safe) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [to_plain(v, json_safe=json_safe) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy values
        return to_plain(value.tolist(), json_safe=json_safe)
    if json_safe and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two nested mappings (plain configs) differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true/false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of ({_type_name(args[0])})"
        return f"a list of {len(args)}: " + ", ".join(_type_name(a) for a in args)
    if _is_config_class(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    """Value from YAML -> value of type tp, or _INVALID with the reason appended to problems."""
    origin = typing.get_origin(tp)

    def bad(extra: str = "") -> object:
        problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}{extra}")
        return _INVALID

    if _is_config_class(tp):
        if not isinstance(value, Mapping):
            return bad()
        return _build(tp, value, key + ".", problems)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            return None if type(None) in args else bad()
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _coerce(arg, value, key, trial)
            if out is not _INVALID:
                return out
        return bad()
    if origin is Literal:
        choices = typing.get_args(tp)
        return value if value in choices else bad()
    if origin is tuple:
        args = typing.get_args(tp)
        variadic = len(args) == 2 and args[1] is Ellipsis
        if variadic and not isinstance(value, (list, tuple)) and value is not None:
            value = [value]  # a scalar is a list of one: --set theory.k=0.5
        if not isinstance(value, (list, tuple)):
            return bad()
        items = list(value)
        if not variadic and len(items) != len(args):
            return bad(f" ({len(items)} items)")
        elem_types = [args[0]] * len(items) if variadic else list(args)
        out = [
            _coerce(t, v, f"{key}[{i}]", problems)
            for i, (t, v) in enumerate(zip(elem_types, items, strict=True))
        ]
        return _INVALID if any(o is _INVALID for o in out) else tuple(out)
    if tp is bool:
        return value if isinstance(value, bool) else bad()
    if tp is int:
        if isinstance(value, bool):
            return bad()
        if isinstance(value, int):
            return value
        number = _number(value)
        if number is not None and math.isfinite(number) and number.is_integer():
            return int(number)  # 1e6 and 1_000_000 are integers too
        return bad()
    if tp is float:
        if isinstance(value, bool):
            return bad()
        number = _number(value)
        return number if number is not None else bad()
    if tp is str:
        return value if isinstance(value, str) else bad(" (quote it in YAML)")
    raise TypeError(f"config field {key} has unsupported type {tp!r}")  # a bug in a config class


def _number(value: Any) -> float | None:
    # PyYAML reads 5e-4 (no dot) as a string; accept it as the number everyone means.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def _build(cls: type[T], data: Mapping[str, Any], prefix: str, problems: list[str]) -> T:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints or key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = (
                f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(names)})"
            )
            problems.append(f"{prefix}{key}: unknown key{hint}")
            continue
        out = _coerce(hints[key], value, prefix + key, problems)
        if out is not _INVALID:
            kwargs[key] = out
    return cls(**kwargs)


def _field_of(message: str) -> str:
    """ "probe.counts[0]: expected ..." -> "probe.counts"."""
    return re.sub(r"\[\d+\]", "", message.split(":", 1)[0])


def _check_all(obj: Any, prefix: str, problems: list[str], unreadable: set[str]) -> None:
    """Run every nested `check()`; messages are prefixed with their section's path.

    Messages about a field whose value could not be read are dropped: they would only report a
    knock-on effect of the default that stood in for the bad value.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_all(value, f"{prefix}{f.name}.", problems, unreadable)
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    _check_all(item, f"{prefix}{f.name}[{i}].", problems, unreadable)
    check = getattr(obj, "check", None)
    if callable(check):
        messages = (prefix + msg for msg in check())
        problems.extend(m for m in messages if _field_of(m) not in unreadable)


def from_plain(cls: type[T], data: Mapping[str, Any] | None, source: str | None = None) -> T:
    """Build and validate a config from plain data; raises ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"expected a mapping of sections at the top level, got {type(data).__name__}", source
        )
    problems: list[str] = []
    # Start from the defaults as plain data, so a partial section keeps the parent's defaults.
    obj = _build(cls, deep_merge(to_plain(cls()), data), "", problems)
    _check_all(obj, "", problems, {_field_of(p) for p in problems})
    if problems:
        raise ConfigError(problems, source)
    return obj


def validate(obj: T) -> T:
    """Re-read and re-check an existing config (e.g. one made with dataclasses.replace): types
    are coerced as from YAML, every problem is reported; returns the clean config."""
    return from_plain(type(obj), to_plain(obj))


# ----------------------------------------------------------------------------------------------
# YAML, presets, overrides.


def dump_yaml(obj: Any) -> str:
    """The resolved config as YAML, fields in declaration order."""
    return yaml.safe_dump(to_plain(obj), sort_keys=False, allow_unicode=True, width=100)


def from_yaml(cls: type[T], text: str, source: str | None = None) -> T:
    """Inverse of dump_yaml: from_yaml(cls, dump_yaml(cfg)) == cfg."""
    return from_plain(cls, _parse_yaml(text, source), source)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, source: str | None) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML{where}: {problem}", source) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply to be a config", source) from None


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, or a ConfigError saying why it cannot be used."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found: check the path", str(p)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML config file", str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read config file ({exc.__class__.__name__}: {exc})", str(p)
        ) from None
    data = _parse_yaml(text, str(p))
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"expected a mapping of sections at the top level, got {type(data).__name__}", str(p)
        )
    return dict(data)


def preset_names(package: str = "lmcollapse.presets") -> list[str]:
    """Names of the YAML presets shipped inside the package."""
    root = resources.files(package)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def preset_description(name: str, package: str = "lmcollapse.presets") -> str:
    """The preset's first comment line: what it is for."""
    for line in (
        (resources.files(package) / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    ):
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def load_preset(
    name: str, package: str = "lmcollapse.presets", _seen: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A shipped preset as plain data (merged over the dataclass defaults by `resolve`), with
    the preset it `extends` merged underneath."""
    names = preset_names(package)
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(names)}")
    if name in _seen:
        raise ConfigError(f"presets extend each other in a circle: {' -> '.join((*_seen, name))}")
    text = (resources.files(package) / f"{name}.yaml").read_text(encoding="utf-8")
    data = _parse_yaml(text, f"preset {name}")
    return with_base(dict(data or {}), f"preset {name}", package, (*_seen, name))


def with_base(
    data: dict[str, Any],
    source: str | None,
    package: str = "lmcollapse.presets",
    _seen: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`extends: PRESET` at the top of a preset or config file: the file is merged over it."""
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"extends: expected a preset name, got {base!r}", source)
    return deep_merge(load_preset(base, package, _seen), data)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """["paradigm.k=0.5", "run.seed=3"] -> {"paradigm": {"k": 0.5}, "run": {"seed": 3}}.

    Values are YAML: numbers, true/false, null, [lists], quoted strings.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or not all(p.isidentifier() for p in parts):
            raise ConfigError(
                f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. paradigm.k=0.5"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(
                f"--set {item!r}: the value is not valid YAML (quote strings)"
            ) from None
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(
    cls: type[T],
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    presets_package: str = "lmcollapse.presets",
) -> T:
    """defaults <- preset <- config file <- --set; validated once, every problem listed."""
    data: dict[str, Any] = {}
    source = None
    if preset is not None:
        data = deep_merge(data, load_preset(preset, presets_package))
        source = f"preset {preset}"
    if config is not None:
        data = deep_merge(data, with_base(read_yaml_file(config), str(config), presets_package))
        source = str(config)
    if overrides:
        over = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
        data = deep_merge(data, over)
        source = f"{source} with --set" if source else "--set"
    return from_plain(cls, data, source)
