"""A command group that imports a command's module only when that command runs (or --help lists it).

``recplatform features user ID`` then pays for the features module alone, not for the training, embedding and
evaluation modules with their numpy, psycopg and pandas imports. Each module keeps its ``register(app)``; the
group calls it on a scratch Typer app and takes the click commands Typer builds, so options and help are exactly
what an eager registration gives.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import typer

try:  # Typer >= 0.2x coerces every parameter through a pydantic TypeAdapter (importing pydantic: 0.1-0.2 s)
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # pragma: no cover - an older Typer: nothing to skip
    RuntimeParam = None  # type: ignore[assignment,misc]

from recplatform.cli.output import HELP_SETTINGS, WrappingGroup

if TYPE_CHECKING:  # pragma: no cover - typing only
    from typer._click import Command, Context


class LazyGroup(WrappingGroup):
    """Commands named in :attr:`lazy_commands` (name -> module with ``register(app)``) load on first use,
    in that order in --help."""

    lazy_commands: dict[str, str] = {}

    def list_commands(self, ctx: Context) -> list[str]:
        return [*self.lazy_commands, *(name for name in self.commands if name not in self.lazy_commands)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self._load(self.lazy_commands[cmd_name], ctx)
        return self.commands.get(cmd_name)

    def get_help_option(self, ctx: Context) -> Any:
        option = super().get_help_option(ctx)
        _plain(option)
        return option

    def _load(self, module_name: str, ctx: Context) -> None:
        """Register every command of one module (a module may hold several)."""
        module = importlib.import_module(module_name)
        scratch = typer.Typer(**HELP_SETTINGS)
        module.register(scratch)
        for name, command in typer.main.get_group(scratch).commands.items():
            _plain_words(command, ctx)
            self.commands.setdefault(name, command)


#: Annotations whose command-line values are, as given, what the function takes: words (str) and flags (bool).
_PLAIN = (str, Optional[str], list[str], Optional[list[str]], bool, Optional[bool])

if RuntimeParam is not None:
    @dataclass(frozen=True)
    class _Plain(RuntimeParam):
        """Words as given (a list for several) and flags as bools: what Typer's adapters return for them, without
        importing pydantic. Any other value goes to Typer's own coercion."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.annotation in (bool, Optional[bool]):
                if isinstance(value, bool):
                    return value
            elif isinstance(value, str):
                return value
            elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)


def _plain(param: Any) -> None:
    """Give one text or flag parameter :class:`_Plain` coercion (a parameter with a parser keeps Typer's)."""
    descriptor = getattr(param, "type_descriptor", None)
    if (RuntimeParam is not None and descriptor is not None and getattr(param, "_runtime_param", False) is None
            and descriptor.annotation in _PLAIN and descriptor.parameter_info.parser is None):
        param._runtime_param = _Plain(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)


def _plain_words(command: Any, ctx: Context) -> None:
    """:func:`_plain` for every parameter of a command, its --help, and those of a group's commands, so that a
    command with only such parameters (``features user ID --json``) never imports pydantic."""
    for param in [*getattr(command, "params", []), command.get_help_option(ctx)]:
        _plain(param)
    for sub in getattr(command, "commands", {}).values():
        _plain_words(sub, ctx)
