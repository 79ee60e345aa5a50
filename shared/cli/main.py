"""The ``wsauth`` console script.

Subcommands are click commands that each package registers under the
``wsauth.commands`` entry-point group (see pyproject.toml), so this module
never imports ``issuer`` or ``ws``: ``wsauth issuer`` comes from
``wsauth.issuer.cli``, ``wsauth gateway`` from ``wsauth.ws.cli``.

Every setting of :data:`wsauth.shared.core.config.SETTINGS` is also a flag
(``--token-ttl`` for ``WSAUTH_TOKEN_TTL``) on the commands that take
:func:`settings_options`; a flag wins over the environment. A bad value
stops the command with one line naming the setting and exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, NoReturn, TypeVar

import click

from wsauth.shared.core.config import SETTINGS, Settings, load_settings
from wsauth.shared.core.errors import ConfigError, WsAuthError

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(function: F) -> F:
    """Add a ``--flag`` for every setting; the values land in ``settings_flags``."""

    def remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            ctx.ensure_object(dict).setdefault("settings_flags", {})[param.name] = value
        return value

    for setting in reversed(SETTINGS):
        function = click.option(
            setting.flag,
            setting.name,
            default=None,
            expose_value=False,
            callback=remember,
            help=f"{setting.help} [env: {setting.env}]",
            metavar="VALUE",
        )(function)
    return function


def load_cli_settings(ctx: click.Context | None = None, **overrides: Any) -> Settings:
    """Settings from the environment plus this command's flags.

    Raises:
        click.exceptions.Exit: after printing one line naming a bad setting.
    """
    ctx = ctx or click.get_current_context()
    flags = dict((ctx.find_root().obj or {}).get("settings_flags", {}))
    flags.update((ctx.obj or {}).get("settings_flags", {}))
    flags.update(overrides)
    try:
        return load_settings(overrides=flags)
    except ConfigError as error:
        fail(str(error))


def fail(message: str) -> NoReturn:
    """Print one line to stderr and exit with status 2."""
    click.echo(f"wsauth: error: {message}", err=True)
    raise click.exceptions.Exit(2)


def echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


class _Commands(click.Group):
    """A group whose commands come from the ``wsauth.commands`` entry points."""

    def _discovered(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group="wsauth.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._discovered()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        entry = self._discovered().get(cmd_name)
        if entry is None:
            return None
        loaded = entry.load()
        return loaded if isinstance(loaded, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WsAuthError as error:
            fail(str(error))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """wsauth: short-lived, single-use tokens for WebSocket authentication."""


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="wsauth")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
