"""A command group that imports a command's module only when that command runs (or --help lists it).

``recplatform features user ID`` then pays for the features module alone, not for the training, embedding and
evaluation modules with their numpy, psycopg and pandas imports. Each module keeps its ``register(app)``; the
group calls it on a scratch Typer app and takes the click commands Typer builds, so options and help are exactly
what an eager registration gives.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import typer

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
            self._load(self.lazy_commands[cmd_name])
        return self.commands.get(cmd_name)

    def _load(self, module_name: str) -> None:
        """Register every command of one module (a module may hold several)."""
        module = importlib.import_module(module_name)
        scratch = typer.Typer(**HELP_SETTINGS)
        module.register(scratch)
        for name, command in typer.main.get_group(scratch).commands.items():
            self.commands.setdefault(name, command)
