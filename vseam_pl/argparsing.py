"""One parser style for every `vseam` command: jsonargparse, one flag spelling (underscores), `-c/--config` YAML.

`train` and `evaluate` are LightningCLIs and `export` is `export()`'s signature (jsonargparse's own spelling). The
other commands are functions whose signature is their flags (`command_parser`), or, for a study, the fields of one
settings dataclass (`config_parser`): each parameter is a flag with its type, default and docstring, spelled as the
flags always were (a bool is a switch, a list takes several values), and a parameter typed
`Annotated[SomeConfig, Flat()]` contributes the dataclass's fields as flags of their own. So a setting and its
default are declared once, in the dataclass or the signature, for the CLI, the callbacks and the Python API alike.

`ArgumentParser` is a `jsonargparse.ArgumentParser` with what the LightningCLIs have: `-c/--config FILE` (a YAML
mapping of flag names to values; several files are merged in order and flags given on the command line win; an
unknown key is an error naming it) and `--print_config`. Every hyphenated long option also gets its underscore
spelling, which is the documented one (`--batch_size`), so older command lines (`--batch-size`) keep working;
`underscore_flags` gives the jsonargparse-spelled tools the same aliases.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import jsonargparse


def _text(value: Any) -> str:
    return str(value)


# an option without a type reads a string on the command line; from a YAML file it must be one too (`batch_size: 8`
# is "8", as `--batch_size 8` is)
_text.__name__ = "str"


class _HelpFormatter(jsonargparse.DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions (the tools' docstrings) keep their line breaks; an untyped option shows `type: str` (not the
    converter's repr), and argparse's `%%` escape shows as `%` (jsonargparse does not expand it)."""

    def _get_type_str(self, action: argparse.Action) -> str | None:
        return "str" if action.type is _text else super()._get_type_str(action)

    def _expand_help(self, action: argparse.Action) -> str:
        return super()._expand_help(action).replace("%%", "%")


class ArgumentParser(jsonargparse.ArgumentParser):
    """`jsonargparse.ArgumentParser` with `-c/--config`, underscore aliases for hyphenated long options and no
    prefix abbreviations. `parse_args` returns the flags only (not the config file names), as argparse did."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # a prefix of a flag (`--batch` for `--batch_size`) must fail, as LightningCLI's keys do
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        # run as `vseam synth`: usage and errors name that, not the module
        if sys.argv[0].startswith("vseam "):
            kwargs["prog"] = sys.argv[0]
        super().__init__(*args, **kwargs)
        super().add_argument(
            "-c",
            "--config",
            action=jsonargparse.ActionConfigFile,
            help="YAML file of flag values (keys: the flag names); flags given after it win",
        )

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return _aliasing(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> Any:
        return _aliasing(super().add_mutually_exclusive_group(*args, **kwargs))

    def add_argument(self, *names: Any, **kwargs: Any) -> Any:
        return super().add_argument(*with_underscore_aliases(names), **_typed(kwargs))

    def parse_args(self, *args: Any, **kwargs: Any) -> Any:
        ns = super().parse_args(*args, **kwargs)
        if (
            "config" in ns
        ):  # its values are in the namespace; tools that record their settings must not see paths
            del ns["config"]
        return ns


def _typed(kwargs: dict[str, Any]) -> dict[str, Any]:
    takes_value = kwargs.get("action") in (None, "store", "append") and kwargs.get("nargs") != 0
    return {"type": _text, **kwargs} if takes_value else kwargs


def _aliasing(group: Any) -> Any:
    plain = group.add_argument
    group.add_argument = lambda *names, **kw: plain(*with_underscore_aliases(names), **_typed(kw))
    return group


def with_underscore_aliases(names: tuple[Any, ...]) -> tuple[Any, ...]:
    """`("--batch-size",)` -> `("--batch_size", "--batch-size")` and `("--data_root",)` -> `("--data_root",
    "--data-root")`: the underscore spelling first, so help and `dest` show it, then the hyphenated alias."""
    out: list[Any] = []
    for name in names:
        if isinstance(name, str) and name.startswith("--") and ("-" in name[2:] or "_" in name[2:]):
            key = name[2:]
            spellings = ["--" + key.replace("-", "_"), "--" + key.replace("_", "-")]
        else:
            spellings = [name]
        out += [s for s in spellings if s not in out]
    return tuple(out)


def underscore_flags(argv: list[str] | None) -> list[str]:
    """The jsonargparse tools' (train, evaluate, export) command line with hyphenated long flags spelled with
    underscores (`--trainer.max-epochs 2` -> `--trainer.max_epochs 2`, `--push-to-hub=x` -> `--push_to_hub=x`):
    their keys are Python names, so this is the one spelling, and the hyphenated one stays an alias. Values are
    left alone. `None` reads `sys.argv`."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = []
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            key, eq, value = arg[2:].partition("=")
            arg = "--" + key.replace("-", "_") + eq + value
        out.append(arg)
    return out


# -- commands from typed signatures --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flat:
    """Marks a command parameter `Annotated[SomeConfig, Flat(...)]`: the dataclass's fields are flags of their own
    (`--top_k`, not `--config.top_k`), with the fields' types, defaults, docstrings and `metadata["choices"]`.
    `rename` maps a field to its flag name; `skip` leaves fields out (they keep the dataclass's default, or the
    command sets them)."""

    rename: Mapping[str, str] = field(default_factory=dict)
    skip: tuple[str, ...] = ()

    def flag(self, name: str) -> str:
        return self.rename.get(name, name)


@dataclass(frozen=True)
class Flag:
    """Extras of one flag, `Annotated[type, Flag(...)]`: `metavar`, `choices` the type does not spell, `nargs`
    (`argparse.REMAINDER`: every later argument is a value), or `positional` (`vseam_pl.report PATH`)."""

    choices: Sequence[Any] | None = None
    metavar: Any = None
    nargs: Any = None
    positional: bool = False


@dataclass(frozen=True)
class _Option:
    name: str  # the flag (and namespace key)
    type: Any
    default: Any
    required: bool
    help: str | None
    choices: Sequence[Any] | None = None
    metavar: Any = None
    nargs: Any = None
    positional: bool = False


def _docs(obj: Any) -> dict[str, str]:
    """Parameter (function) or attribute (dataclass) docstrings by name. Imported here, when a parser is built: the
    library path (`lit_module` imports `report`, whose CLI is built here) needs no help texts."""
    import docstring_parser

    try:
        parsed = docstring_parser.parse_from_object(obj)
    except (
        OSError,
        TypeError,
        docstring_parser.ParseError,
    ):  # no source (built interactively): no help texts
        return {}
    return {p.arg_name: " ".join((p.description or "").split()) for p in parsed.params if p.description}


def _split(annotation: Any) -> tuple[Any, list[Any]]:
    """`Annotated[T, m...]` -> (T, [m...]); anything else -> (annotation, [])."""
    if typing.get_origin(annotation) is typing.Annotated:
        return annotation.__origin__, list(annotation.__metadata__)
    return annotation, []


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _parameter_hints(fn: Callable) -> dict[str, Any]:
    """The evaluated annotations of `fn`'s parameters (not its return: a command may return a type it imports only
    for type checking, to keep `--help` light)."""
    params = {k: v for k, v in fn.__annotations__.items() if k != "return"}
    return typing.get_type_hints(
        types.SimpleNamespace(__annotations__=params), fn.__globals__, include_extras=True
    )


def config_options(cls: type, flat: Flat | None = None) -> list[_Option]:
    """The flags of dataclass `cls`'s fields: types, defaults, docstrings and `metadata["choices"]`."""
    flat = flat or Flat()
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = _docs(cls)
    options = []
    for f in dataclasses.fields(cls):
        if f.name in flat.skip:
            continue
        ftype, meta = _split(hints[f.name])
        extra = next((m for m in meta if isinstance(m, Flag)), Flag())
        default = _field_default(f)
        options.append(
            _Option(
                flat.flag(f.name),
                ftype,
                default,
                default is dataclasses.MISSING,
                docs.get(f.name),
                f.metadata.get("choices", extra.choices),
                f.metadata.get("metavar", extra.metavar),
                f.metadata.get("nargs", extra.nargs),
            )
        )
    return options


def command_options(fn: Callable) -> list[tuple[str, Any, list[_Option]]]:
    """The flags of command `fn`, per parameter: (parameter, its `Flat` dataclass or None, its options)."""
    hints = _parameter_hints(fn)
    docs = _docs(fn)
    out = []
    for name, param in inspect.signature(fn).parameters.items():
        tp, meta = _split(hints.get(name, Any))
        flat = next((m for m in meta if isinstance(m, Flat)), None)
        if flat is not None:
            tp = next(a for a in typing.get_args(tp) or (tp,) if a is not type(None))  # `Config | None`
            out.append((name, tp, config_options(tp, flat)))
            continue
        extra = next((m for m in meta if isinstance(m, Flag)), Flag())
        required = param.default is inspect.Parameter.empty
        option = _Option(
            name,
            tp,
            None if required else param.default,
            required,
            docs.get(name),
            extra.choices,
            extra.metavar,
            extra.nargs,
            extra.positional,
        )
        out.append((name, None, [option]))
    return out


def _argument(option: _Option) -> tuple[tuple[str, ...], dict[str, Any]]:
    """argparse-style spelling of a typed option: a bool is a switch (`--filter`, `--no-filter`), a list or tuple
    takes several values (`--levels object relation`), a Literal lists its choices."""
    tp = option.type
    kwargs: dict[str, Any] = {"help": option.help, "required": option.required}
    if not option.required:
        kwargs["default"] = option.default
    core, args = tp, typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        core = rest[0] if len(rest) == 1 else tp
    origin, inner = typing.get_origin(core), typing.get_args(core)
    if core is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        del kwargs["required"]
    elif origin in (list, Sequence) or (origin is tuple and inner[-1:] == (Ellipsis,)):
        kwargs.update(nargs="+", type=inner[0])
    elif origin is tuple:
        kwargs.update(nargs=len(inner), type=inner[0])
    else:
        kwargs["type"] = tp
    item = kwargs.get("type")
    if typing.get_origin(item) is Literal:  # choices shown as {a,b}, values read as text
        kwargs["choices"] = typing.get_args(item)
    if option.choices is not None:
        kwargs["choices"] = tuple(option.choices)
    if "choices" in kwargs:  # read as text (`_typed`), shown as `{a,b}`
        kwargs.pop("type", None)
    if option.metavar is not None:
        kwargs["metavar"] = option.metavar
    if option.nargs is not None:
        kwargs["nargs"] = option.nargs
    if option.nargs == argparse.REMAINDER:  # every later argument, as text: no type to check a list against
        kwargs.pop("type", None)
    if option.positional:
        del kwargs["required"]
        return (option.name,), kwargs
    return ("--" + option.name,), kwargs


def command_parser(fn: Callable, prog: str | None = None, description: str | None = None) -> ArgumentParser:
    """The parser of command `fn`: one flag per parameter (and per field of a `Flat` dataclass parameter)."""
    parser = ArgumentParser(prog=prog, description=description)
    for _, _, options in command_options(fn):
        for option in options:
            names, kwargs = _argument(option)
            parser.add_argument(*names, **kwargs)
    return parser


def default_of(fn: Callable, name: str) -> Any:
    """The default of parameter `name` of `fn` (a class: of its `__init__`): for a setting that follows another's
    declaration (a study's `lr` is the module's) instead of repeating its value."""
    return inspect.signature(fn).parameters[name].default


def config_parser(cls: type, prog: str | None = None, description: str | None = None) -> ArgumentParser:
    """The parser of a command whose flags are the fields of dataclass `cls`."""
    parser = ArgumentParser(prog=prog, description=description)
    for option in config_options(cls):
        names, kwargs = _argument(option)
        parser.add_argument(*names, **kwargs)
    return parser


def parse_config(
    cls: type, argv: list[str] | None, prog: str | None = None, description: str | None = None
) -> Any:
    """`cls` built from the command line `argv` (`config_parser`)."""
    ns = config_parser(cls, prog, description).parse_args(argv)
    return cls(**{f.name: ns[f.name] for f in dataclasses.fields(cls)})


def command_kwargs(fn: Callable, ns: Any) -> dict[str, Any]:
    """`fn`'s keyword arguments from a parsed namespace: `Flat` dataclasses built from their flags."""
    values = dict(ns.items()) if hasattr(ns, "items") else vars(ns)
    kwargs = {}
    for name, cls, options in command_options(fn):
        if cls is None:
            kwargs[name] = values[options[0].name]
            continue
        flat = next(m for m in _split(_parameter_hints(fn)[name])[1] if isinstance(m, Flat))
        kwargs[name] = cls(
            **{f.name: values[flat.flag(f.name)] for f in dataclasses.fields(cls) if f.name not in flat.skip}
        )
    return kwargs
